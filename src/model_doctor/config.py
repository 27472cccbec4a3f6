"""Config dataclasses: YAML defaults, CLI overrides, the resolved config saved next to outputs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .diagnosis.artifact import DEFAULT_THETA
from .diagnosis.engine import DEFAULT_NOISE
from .io import atomic_write_text
from .training import FitConfig

#: ``treat.object_colour``: the user's word on an object's colour. ``unknown`` (default): the plain
#: background swap is the headline and a swap claim needs the colour-matched one too; ``own`` (a
#: yellow fruit): the colour is the class's, the colour-matched swap neither claims nor vetoes;
#: ``cue`` (a stain, a white balance): the colour may be a shortcut, so the counterfactuals paste
#: colour-matched objects and the colour-matched swap selects and heads the report. Why a word:
#: the same training images and model fit both readings (``docs/results/reliance/reliance_vs_truth.md``).
OBJECT_COLOUR = ("unknown", "own", "cue")

#: ``--select-rule`` choices: ``auto`` (default: ``groups`` when the validation images have group
#: labels, else ``swap``), ``swap``, ``balanced``, ``mean`` (the rule before; E4's tables) or ``groups``
SELECT_RULES = ("auto", "swap", "balanced", "mean", "groups")

__all__ = ["ModelConfig", "DataConfig", "DiagnoseConfig", "ExamineConfig", "TrainConfig", "TreatConfig", "RuntimeConfig", "Config",
           "load_config", "save_config"]


@dataclass
class ModelConfig:
    name: str | None = None          # registry name, torchvision:NAME or file:path.py:factory
    weights: str | None = None       # .safetensors or state-dict .pt (loaded with weights_only=True)
    in_channels: int | None = None
    num_classes: int | None = None
    small: bool | None = None        # small-image variant (default: image size < 64 px)
    pretrained: bool = False         # start from torchvision/timm ImageNet weights (needs them cached or network)


@dataclass
class DataConfig:
    name: str = "digits"             # digits | mnist | fashion-mnist | imagefolder:PATH
    root: str | None = None
    image_size: int | None = None
    download: bool = False


@dataclass
class DiagnoseConfig:
    layers: Any = None               # None: the architecture's default layers (else "auto" = last conv)
    samples_per_class: int = 100
    min_confidence: float = 0.9
    noise: float = DEFAULT_NOISE
    noise_draws: int = 10
    batch_size: int = 64
    seed: int = 0
    reduce: str = "abs"
    theta: float = DEFAULT_THETA
    allow_empty_classes: bool = False
    estimate: bool = False           # only predict the run's time (a few images timed) and its FLOPs


@dataclass
class ExamineConfig:
    diagnosis: str | None = None     # folder of a saved Diagnosis
    split: str = "test"
    masks: str | None = None         # foreground annotations of the examined split: background reliance
    mask_format: str = "labelme"
    refine: str = "grabcut"          # grabcut | none: the object's pixels inside each annotation (as treat.refine)
    erode: int = 0                   # shrink each foreground by N pixels after refinement (as treat.erode)
    groups: str | None = None        # CSV file,group: accuracy per group and the worst group (as treat.groups)
    limit: int | None = None         # examine only the first N samples
    top_k: int = 5
    batch_size: int = 64


@dataclass
class TrainConfig:
    """The optimiser's settings default to :class:`~model_doctor.training.FitConfig`'s (declared once)."""

    epochs: int = 15
    lr: float = FitConfig.lr
    momentum: float = FitConfig.momentum
    weight_decay: float = FitConfig.weight_decay
    batch_size: int = FitConfig.batch_size
    seed: int = 0
    val_fraction: float = FitConfig.val_fraction
    split_seed: int = 0              # fixed seed of the train/validation split (shared by train and treat)
    freeze_bn: bool = False          # BatchNorm in eval mode while training (needed for exact DDP equality on CPU)
    sync_bn: bool = False            # SyncBatchNorm under torchrun (CUDA only)


@dataclass
class TreatConfig:
    diagnosis: str | None = None     # saved Diagnosis of the original; default: diagnose it first
    layers: Any = None               # constrained layers (default: the diagnosis's)
    alpha: float = 1.0               # channel-wise weight (Eq. 5)
    beta: Any = 0.0                  # space-wise weight, needs masks; a list tries each and keeps the one the selection rule picks
    space_method: str = "counterfactual"  # counterfactual | attribution | input | paper (Eq. 6); docs/method.md
    input_mode: str = "share"        # space_method=input: share (scale-invariant) | rrr (Ross et al.)
    pool_batch: int = 32             # annotated images drawn per step by attribution/input/counterfactual
    partners: str = "other"          # counterfactual backgrounds: other (another class's) | any (any other image's); docs/method.md
    kl_weight: float = 1.0           # counterfactual: weight of its KL consistency term (0 = the pasted image's CE only)
    refine: str = "grabcut"          # grabcut | none: estimate the object's pixels inside each annotation (boxes are not masks)
    erode: int = 0                   # shrink each foreground by N pixels after refinement: edge pixels blend with the background
    object_colour: str = "unknown"   # unknown | own | cue: the user's word on whether an object's colour may be a shortcut (docs/method.md)
    holdout: float = 0.25            # share of each class's annotated images held out to measure background reliance
    groups: str | None = None        # CSV file,group for an ImageFolder: worst-group test accuracy beside the average
    select_rule: str = "auto"        # auto | swap | balanced | mean | groups: what picks each arm's epoch and the weight (treatment.reliance)
    min_val_share: float = 0.5       # an epoch under this share of the original's validation accuracy is chosen only if every one is
    escalate_below: float = 0.5      # selection-set swap accuracy under this share of the original's: every arm again at kl_weight 0 (0 = never)
    escalate_epochs: int | None = None  # the escalated round's epochs (default: 3 × epochs)
    annotated_per_class: int | None = None  # keep masks for only N training images per class (e.g. a decoy benchmark)
    rrr: float = 0.0                 # RRR input-gradient baseline weight, needs masks
    v: float | None = None           # Eq. 5 threshold on min-max normalised ā (default θ = 0.2)
    noise_draws: int = 10            # J (paper default 10; 0 = no noise)
    noise: float | None = None       # δ (default: the diagnosis's)
    variant: str = "paper"           # paper | official
    reduce: str = "abs"
    normalize: bool = True
    every: int = 1                   # lazy regularisation: apply every k steps with weight x k
    warmup_steps: int = 0
    freeze_bn: bool = False
    tail_bn: str = "train"           # train: batch-summed derivative through batch statistics | eval: per-image (running stats)
    control: bool = True             # also run the CE-only control arm with the identical schedule
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: int = 10
    lr: float | None = None          # None: the rate the original was trained at (config.yaml beside its weights), else 0.01
    batch_size: int = 64
    masks: str | None = None         # folder/file of foreground annotations for beta / rrr
    mask_format: str = "labelme"     # labelme | png | coco | boxes
    expand: int | None = None        # foreground expansion in model-input px (default: 30 px at 224, scaled)


@dataclass
class SelectConfig:
    per_class: int = 20              # paper: 20 low-confidence images per class
    low_confidence: bool = True


@dataclass
class RuntimeConfig:
    """Where and how a command runs, not what it computes: one section every command reads."""

    device: str = "auto"             # auto (CUDA when available) | cpu | cuda | cuda:N; resolved value saved in config.yaml
    workers: int | None = None       # DataLoader workers of every loader (default: 0 on CPU, min(8, cores/GPU processes - 1) on CUDA)
    precision: str = "fp32"          # fp32 | bf16 (autocast, for GPUs) for the whole run; fp16 is refused
    resume: bool = False             # continue the run in the output folder (train / treat: from its checkpoints; same settings only)
    overwrite: bool = False          # start over in an output folder that holds a run of the same command (its files removed)


#: where the runtime settings lived before the runtime section (config.yaml files saved by 0.x runs)
_MOVED = {("device",): "device", ("train", "workers"): "workers", ("train", "precision"): "precision",
          ("train", "resume"): "resume", ("diagnose", "precision"): "precision", ("examine", "precision"): "precision"}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    diagnose: DiagnoseConfig = field(default_factory=DiagnoseConfig)
    examine: ExamineConfig = field(default_factory=ExamineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    treat: TreatConfig = field(default_factory=TreatConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    out: str | None = None
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a field's type hint (int, float, bool, str, X | None, list[X], Any)."""
    import types
    import typing

    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _merge(obj: Any, values: dict[str, Any], where: str) -> None:
    import typing

    names = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    for key, value in values.items():
        if key not in names:
            raise ValueError(f"unknown config key {where}{key!r}; valid keys: {', '.join(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {where}{key!r} must be a mapping, got {value!r}")
            _merge(current, value, f"{where}{key}.")
        else:
            if not _type_ok(value, hints[key]):
                want = str(hints[key]).replace("typing.", "")
                raise ValueError(f"config key {where}{key} = {value!r} ({type(value).__name__}); it must be {want}")
            setattr(obj, key, value)


def load_config(path: str | Path | None, base: Config | None = None) -> Config:
    """Defaults, updated from a YAML file (``yaml.safe_load``); unknown keys are an error."""
    cfg = base or Config()
    if path is None:
        return cfg
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist; check --config")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ValueError(f"config file {str(p)!r} is not valid YAML{at} ({getattr(exc, 'problem', None) or type(exc).__name__}); "
                         "fix its syntax (only plain YAML types are read)") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping at the top level")
    _merge(cfg, _moved_to_runtime(data, p), "")
    return cfg


def _moved_to_runtime(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """An older config.yaml with device, workers, precision or resume in their old sections, read
    into ``runtime`` (the saved file is never rewritten). Of the old per-command precisions the one
    not at the default wins; two different ones are an error."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    found: dict[str, list[Any]] = {}
    for where, key in _MOVED.items():
        holder = data if len(where) == 1 else data.get(where[0])
        if isinstance(holder, dict) and where[-1] in holder:
            found.setdefault(key, []).append(holder.pop(where[-1]))
    moved: dict[str, Any] = {}
    for key, values in found.items():
        distinct = list(dict.fromkeys(v for v in values if not (key == "precision" and v == "fp32"))) or values[:1]
        if len(distinct) > 1:
            raise ValueError(f"config file {str(path)!r} sets {key} to {distinct}; set it once, as runtime.{key}")
        moved[key] = distinct[0]
    if moved and isinstance(data.get("runtime", {}), dict):
        data["runtime"] = {**moved, **data.get("runtime", {})}
    return data


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Set ``{"section.key": value}`` pairs whose value is not ``None`` (CLI flags)."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        target = getattr(cfg, section) if section else cfg
        setattr(target, key, value)
    return cfg


def save_config(cfg: Config, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the resolved config as ``config.yaml`` in ``out_dir`` (atomically)."""
    data = cfg.to_dict()
    if extra:
        data["resolved"] = extra
    path = Path(out_dir) / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path
