"""The config's sections, every option declared once (:func:`~model_doctor.config.options.opt`):
its default, help, choices and range. The CLI's flags and the validation are built from these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.annotations import MASK_FORMATS
from ..data.refine import REFINE_METHODS
from ..diagnosis.artifact import DEFAULT_THETA
from ..diagnosis.engine import DEFAULT_NOISE
from ..training import FitConfig
from .options import opt

__all__ = ["ModelConfig", "DataConfig", "DiagnoseConfig", "ExamineConfig", "TrainConfig", "SelectConfig",
           "RuntimeConfig", "OBJECT_COLOUR", "SELECT_RULES", "SPACE_METHOD_NAMES"]

#: ``treat.object_colour``: the user's word on an object's colour. ``unknown`` (default): the reliance
#: claim is the lower of the plain and the colour-matched swap; ``own`` (a yellow fruit): the colour is
#: the class's, so the colour-matched check is off (a colour cast over the whole image would go unseen);
#: ``cue`` (a stain, a white balance): the colour may be a shortcut, so the counterfactuals paste
#: colour-matched objects and the colour-matched swap selects. Why a word: the same training images and
#: model fit both readings (``docs/results/reliance/reliance_vs_truth.md``).
OBJECT_COLOUR: tuple[str, ...] = ("unknown", "own", "cue")

#: ``--select-rule`` choices: ``auto`` (default: ``groups`` when the validation images have group
#: labels, else ``swap``), ``swap``, ``balanced``, ``mean`` (the rule before; E4's tables) or ``groups``
SELECT_RULES: tuple[str, ...] = ("auto", "swap", "balanced", "mean", "groups")

#: ``--space-method`` choices (the registry :data:`model_doctor.treatment.space.SPACE_METHODS` holds each; a test keeps them equal)
SPACE_METHOD_NAMES: tuple[str, ...] = ("paper", "attribution", "input", "counterfactual")

_POSITIVE_OR_UNSET = "use a positive integer (or leave it unset for the default)"
_FRACTION = "it is a fraction, use a value in [0, 1]"
_LR = "use a finite positive learning rate (e.g. 0.01)"
_PIXELS = "use a whole number of pixels >= 0 (0 = no erosion)"
_REFINE = "use 'grabcut' (default) or 'none'"
_FORMATS: tuple[str, ...] = tuple(MASK_FORMATS)
_MODEL_HELP = "architecture (`model-doctor layers --help` lists them), torchvision:NAME or file:path.py:factory " \
              "(default: from model.json beside --weights, else smallcnn)"


@dataclass
class ModelConfig:
    name: str | None = opt(None, _MODEL_HELP, flag="--model")
    weights: str | None = opt(None, "trained weights: .safetensors or a state-dict .pt (loaded with weights_only=True)")
    in_channels: int | None = opt(None, "input channels of the model (default: 3 for colour ImageFolder images, else 1; "
                                        "later commands read model.json, or the weights' first conv without it)", lo=1, fix=_POSITIVE_OR_UNSET)
    num_classes: int | None = opt(None, "number of classes (default: from the data; later commands read "
                                        "model.json, or the weights' last linear layer without it)", lo=1, fix=_POSITIVE_OR_UNSET)
    small: bool | None = opt(None, "small-image variant of the architecture (CIFAR-style stem); default: images < 64 px")
    pretrained: bool = opt(False, "start from torchvision/timm ImageNet weights (cached locally or downloaded; never "
                                  "needed by tests)")
    init: str | None = opt(None, "start training from your own pretrained weights (.safetensors or a state-dict .pt, "
                                 "loaded with weights_only=True) wherever a tensor's name and shape match; the rest "
                                 "(e.g. a classifier for another number of classes) starts fresh and is logged")


@dataclass
class DataConfig:
    name: str = opt("digits", "dataset: digits (embedded), mnist, fashion-mnist, imagefolder:PATH", flag="--data")
    root: str | None = opt(None, "folder holding torchvision datasets (e.g. ../shared/data)", flag="--data-root")
    image_size: int | None = opt(None, "resize images to this size (default: the size the model was trained at "
                                       "(model.json), else per dataset)", lo=1, fix=_POSITIVE_OR_UNSET)
    download: bool = opt(False, "let torchvision download the dataset")


@dataclass
class DiagnoseConfig:
    layers: Any = opt(None, "layers to diagnose: dotted names, or auto / auto:K = last K conv layers in execution order "
                            "(default: the architecture's own layer, marked by `model-doctor layers NAME`; auto for "
                            "unregistered models)", nargs="+", kind=str)
    samples_per_class: int = opt(100, "T: confident samples per class", lo=1)
    min_confidence: float = opt(0.9, "tau: softmax confidence a sample must exceed", lo=0, hi=1, fix=_FRACTION)
    noise: float = opt(DEFAULT_NOISE, "delta: noise half-width in feature-map units (the paper gives none)", lo=0)
    noise_draws: int = opt(10, "J: noise draws per sample, 0 = no noise", lo=0, fix="use a finite value >= 0")
    batch_size: int = opt(64, "the diagnosis's batch: samples per forward/backward (in treat too; --treat-batch-size is "
                              "the fine-tune's)", lo=1)
    seed: int = opt(0, "noise seed")
    reduce: str = opt("abs", "abs = paper Eq. 3, relu = official code", choices=("abs", "relu"))
    theta: float = opt(DEFAULT_THETA, "threshold on min-max normalised correlation for relevant channels", lo=0, hi=1,
                       fix=_FRACTION)
    allow_empty_classes: bool = opt(False, "do not fail when a class has no eligible sample")
    estimate: bool = opt(False, "do not diagnose: time a few images and print how long the run would take, with its FLOPs")


@dataclass
class ExamineConfig:
    diagnosis: str | None = opt(None, "folder written by `model-doctor diagnose`")
    split: str = opt("test", "split to examine", choices=("train", "test"))
    masks: str | None = opt(None, "foreground annotations of the examined split: adds background reliance "
                                  "(background-swap accuracy, gradient share outside the masks)")
    mask_format: str = opt("labelme", "annotation format", choices=_FORMATS)
    refine: str = opt("grabcut", "foreground inside each annotation: grabcut or none (the annotation as given)",
                      choices=REFINE_METHODS, fix=_REFINE)
    erode: int = opt(0, "shrink each foreground by N pixels after refinement", lo=0, fix=_PIXELS)
    groups: str | None = opt(None, "CSV with file,group rows (paths relative to the ImageFolder root): accuracy per group")
    limit: int | None = opt(None, "examine only the first N samples", lo=1,
                            fix="use a positive number of samples (or leave it unset for all)")
    top_k: int = opt(5, "most deviating channels to report", lo=1)
    batch_size: int = opt(64, "the examination's batch: samples per forward/backward", lo=1)


@dataclass
class TrainConfig:
    """The optimiser's settings default to :class:`~model_doctor.training.FitConfig`'s (declared once)."""

    epochs: int = opt(15, "epochs", lo=1)
    lr: float = opt(FitConfig.lr, "learning rate", lo=0, lo_open=True, fix=_LR)
    momentum: float = opt(FitConfig.momentum, "SGD momentum", lo=0)
    weight_decay: float = opt(FitConfig.weight_decay, "weight decay", lo=0)
    batch_size: int = opt(FitConfig.batch_size, "the training batch: images per SGD step", lo=1)
    seed: int = opt(0, "seed for initialisation, split and data order")
    val_fraction: float = opt(FitConfig.val_fraction, "share of the training split held out for validation", lo=0, hi=1,
                              lo_open=True, hi_open=True, fix="use a fraction in (0, 1), e.g. 0.1")
    split_seed: int = opt(0, "fixed seed of the train/validation split (shared by train and treat)")
    freeze_bn: bool = opt(False, "keep BatchNorm in eval mode while training (exact DDP equality on CPU)")
    sync_bn: bool = opt(False, "SyncBatchNorm under torchrun (CUDA only)")


@dataclass
class SelectConfig:
    per_class: int = opt(20, "images per class (the paper: 20)", lo=1)
    low_confidence: bool = opt(True, "pick the images with the lowest true-class probability (the paper's choice; default)",
                               const=True)


@dataclass
class RuntimeConfig:
    """Where and how a command runs, not what it computes: one section every command reads."""

    device: str = opt("auto", "auto (CUDA when available; default), cpu, cuda or cuda:N; under torchrun each rank uses "
                              "cuda:LOCAL_RANK")
    workers: int | None = opt(None, "DataLoader worker processes (default: 0 on CPU, up to 8 per GPU process on CUDA)",
                              lo=0, fix="use 0 (load in the main process) or more")
    precision: str = opt("fp32", "fp32 or bf16 autocast for the whole run (GPUs; in treat also its diagnosis and every "
                                 "fine-tune); fp16 is refused", choices=("fp32", "bf16", "fp16"))
    resume: bool = opt(False, "continue the run in the output folder (same settings only)")
    overwrite: bool = opt(False, "start over: remove the files this command wrote there (nothing else) and run again")
