"""Architectures: a timm-style registry (``register_model``: factory, default layers, pretrained
source side by side), the small CNNs, the paper's 16 architectures, and ``build_model`` for
registered names, ``torchvision:``/``timm:`` names and ``file:`` factories.

Add a model: one decorated factory in ``small.py`` (or a new module imported below).
"""

from . import paper, small  # noqa: F401  (importing registers their architectures)
from .build import SMALL_IMAGE_THRESHOLD, build_model, load_matching, load_pretrained
from .paper import PAPER_MODELS
from .registry import ModelEntry, default_layers, model_entry, model_names, register_model
from .small import SmallCNN

__all__ = ["register_model", "build_model", "model_names", "model_entry", "default_layers", "SmallCNN",
           "ModelEntry", "SMALL_IMAGE_THRESHOLD", "PAPER_MODELS", "load_pretrained", "load_matching"]
