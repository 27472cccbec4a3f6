"""Model registry: ``NAME`` | ``torchvision:NAME`` | ``file:path.py:factory`` -> ``nn.Module``.

Extension is a decorated factory (timm's ``@register_model`` pattern); the CLI's ``--model``
choices come from :func:`model_names`. A duplicate name raises.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

from torch import nn

from .registry import _REGISTRY, ModelEntry, default_layers, model_entry, model_names, register_model

__all__ = ["register_model", "build_model", "model_names", "model_entry", "default_layers", "SmallCNN",
           "ModelEntry", "SMALL_IMAGE_THRESHOLD", "PAPER_MODELS", "load_pretrained"]

#: Inputs smaller than this (px) get each architecture's small-image variant by default.
SMALL_IMAGE_THRESHOLD = 64


class SmallCNN(nn.Module):
    """Three conv blocks (conv-BN-ReLU, max-pool after the first two), global average pool, linear.

    Small enough to train on CPU in about a minute on 32x32 digits; ``features.8`` is its last
    conv layer (the default layer to diagnose).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model("smallcnn", default_layers="features.8", paper_name="(small 3-conv CNN)")
def smallcnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 32, small: bool | None = None) -> nn.Module:
    return SmallCNN(in_channels, num_classes, width=32)


@register_model("tinycnn", default_layers="features.8", paper_name="(tiny 3-conv CNN for tests)")
def tinycnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 32, small: bool | None = None) -> nn.Module:
    return SmallCNN(in_channels, num_classes, width=8)


@register_model("wrn10_1", default_layers="block3.0.conv2", paper_name="(WideResNet-10-1: the paper's WRN family at CPU size)")
def wrn10_1(in_channels: int = 1, num_classes: int = 10, image_size: int = 32, small: bool | None = None) -> nn.Module:
    from .archs import WideResNet

    return WideResNet(10, 1, in_channels, num_classes)


from . import paper_models  # noqa: E402,F401  (registers the paper's 16 architectures)
from .paper_models import PAPER_MODELS  # noqa: E402


def _torchvision(name: str, in_channels: int, num_classes: int) -> nn.Module:
    import torchvision

    from .paper_models import set_in_channels

    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except ValueError:
        raise ValueError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()") from None
    return set_in_channels(model, in_channels)


def _timm(name: str, in_channels: int, num_classes: int) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ValueError("timm:NAME needs the timm package; pip install timm") from None
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models()")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)


def _from_file(spec: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    path_text, _, factory_name = spec.rpartition(":")
    if not path_text or not factory_name:
        raise ValueError(f"bad model spec 'file:{spec}'; use file:path/to/model.py:factory_function")
    path = Path(path_text)
    if not path.is_file():
        raise ValueError(f"model file {path_text!r} does not exist; use file:path/to/model.py:factory_function")
    mod_spec = importlib.util.spec_from_file_location(f"model_doctor_user_{path.stem}", path)
    module = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
    mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"{path_text!r} has no callable {factory_name!r}; name a function that returns an nn.Module")
    params = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in {"in_channels": in_channels, "num_classes": num_classes,
                                 "image_size": image_size}.items() if k in params}
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{factory_name}() returned {type(model).__name__}, not an nn.Module")
    return model


def load_pretrained(model: nn.Module, spec: str) -> nn.Module:
    """Copy torchvision/timm ImageNet weights into ``model`` where shapes match (the stem and the
    classifier are skipped when they were changed for ``in_channels``/``num_classes``/small images).

    Raises:
        ValueError: no pretrained weights for this spec, or they cannot be fetched (offline).
    """
    name = spec.split(":", 1)[1] if ":" in spec else _PRETRAINED.get(spec)
    if name is None or spec.startswith("file:"):
        raise ValueError(f"no pretrained weights known for {spec!r}; pass --weights with your own checkpoint")
    try:
        if spec.startswith("timm:") or spec in ("senet34", "xception"):
            import timm

            ref = timm.create_model(name, pretrained=True)
        else:
            import torchvision

            ref = torchvision.models.get_model(name, weights="DEFAULT")
    except Exception as exc:
        raise ValueError(f"cannot load pretrained weights for {spec!r} ({type(exc).__name__}: {str(exc)[:100]}); "
                         "they download on first use, so run once with network access or pass --weights") from None
    own = model.state_dict()
    src = {k[4:] if k.startswith("net.") else k: v for k, v in ref.state_dict().items()}
    prefix = "net." if any(k.startswith("net.") for k in own) else ""
    matched = {prefix + k: v for k, v in src.items() if prefix + k in own and own[prefix + k].shape == v.shape}
    own.update(matched)
    model.load_state_dict(own)
    return model


_PRETRAINED = {"alexnet": "alexnet", "vgg16_bn": "vgg16_bn", "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50",
               "senet34": "seresnet34", "resnext50": "resnext50_32x4d", "densenet121": "densenet121",
               "efficientnetv2_s": "efficientnet_v2_s", "googlenet": "googlenet", "xception": "legacy_xception",
               "mobilenetv2": "mobilenet_v2", "inceptionv3": "inception_v3", "shufflenetv2": "shufflenet_v2_x1_0",
               "squeezenet": "squeezenet1_1", "mnasnet": "mnasnet1_0"}


def build_model(spec: str, in_channels: int = 1, num_classes: int = 10, image_size: int = 32,
                small: bool | None = None) -> nn.Module:
    """Build a freshly initialised model from a name or spec.

    Args:
        spec: a registered name, ``torchvision:NAME``, ``timm:NAME`` or ``file:path.py:factory``.
        small: use the architecture's small-image variant (CIFAR-style stem, no early
            down-sampling); default: ``image_size < SMALL_IMAGE_THRESHOLD`` (64 px).

    Raises:
        ValueError: unknown name (listing the registered ones), a bad ``file:`` spec, an input
            an architecture cannot take.
    """
    if in_channels < 1 or num_classes < 2:
        raise ValueError(f"in_channels={in_channels}, num_classes={num_classes}; need >= 1 channel and >= 2 classes")
    if spec.startswith("file:"):
        return _from_file(spec[5:], in_channels, num_classes, image_size)
    if spec.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1], in_channels, num_classes)
    if spec.startswith("timm:"):
        return _timm(spec.split(":", 1)[1], in_channels, num_classes)
    if spec not in _REGISTRY:
        raise ValueError(
            f"unknown model {spec!r}; use one of {', '.join(model_names())}, torchvision:NAME, timm:NAME "
            "or file:path.py:factory"
        )
    small = image_size < SMALL_IMAGE_THRESHOLD if small is None else small
    return _REGISTRY[spec].factory(in_channels=in_channels, num_classes=num_classes, image_size=image_size, small=small)
