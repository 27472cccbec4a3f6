"""What every job shares: the output folder (lock, resume check, config provenance), model and
data loading, the device's worker policy, and the small helpers that print. A job module
(:mod:`model_doctor.jobs`) is the command's steps on top of this; nothing here is a command.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import __version__
from .config import Config, save_config
from .data.datasets import load_dataset
from .distributed import barrier, is_main
from .io import atomic_save_safetensors, atomic_write_json, load_state_dict
from .models import build_model, default_layers
from .training import FitConfig, split_train_val
from .weights import check_finite, init_from, model_json, shape_hints, sidecar

__all__ = ["Log", "versions", "sidecar", "out_dir", "check_resume", "load_data", "train_val_split", "load_model",
           "save_model", "write_json", "save_run_config", "workers", "own_val", "image_channels", "trained_lr", "need_weights",
           "warn_skipped", "check_diagnosis", "pct", "fit_config"]

Log = Callable[[str], None]

if TYPE_CHECKING:
    from .diagnosis import Diagnosis


def versions() -> dict[str, str]:
    import torchvision

    return {"model_doctor": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}


def out_dir(cfg: Config, job: str | None = None) -> Path:
    """Validate ``cfg`` (the one :func:`~model_doctor.validation.validate`, also for library calls),
    check that ``cfg.out`` holds no run of ``job`` the user did not ask to continue or replace
    (:func:`model_doctor.rundir.claim`: ``runtime.resume`` / ``runtime.overwrite``), create it and
    hold its lock (rank 0) for the rest of this process."""
    from .distributed import resolve_device
    from .validation import validate

    validate(cfg)
    resolve_device(cfg.runtime.device)  # every job fails early, before any work, on a device it cannot use
    if not cfg.out:
        raise ValueError("no output folder; pass --out DIR")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; choose a folder")
    if job is not None:  # every rank reads; rank 0 alone removes what --overwrite replaces
        from .rundir import claim

        claim(out, job, cfg.runtime.resume or (cfg.runtime.overwrite and not is_main()),
              cfg.runtime.overwrite and is_main())
        barrier()
    out.mkdir(parents=True, exist_ok=True)
    if is_main():
        from .io import lock_folder

        lock_folder(out)
    return out


def check_resume(cfg: Config, out: Path) -> None:
    """``--resume`` must continue the same run: refuse when config.yaml records other settings."""
    import yaml

    old_path = out / "config.yaml"
    if not cfg.runtime.resume or not old_path.is_file():
        return
    old = yaml.safe_load(old_path.read_text(encoding="utf-8")) or {}
    new = cfg.to_dict()
    diff = []
    for section, values in new.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if (section, key) in (("runtime", "resume"), ("runtime", "overwrite"), ("runtime", "device"),
                                  ("runtime", "workers")):
                continue  # where and how fast it runs, not what it computes
            before = (old.get(section) or {}).get(key, value)
            if before != value:
                diff.append(f"{section}.{key}: {before!r} -> {value!r}")
    if diff:
        raise ValueError(f"--resume with other settings than the run in {str(out)!r} ({'; '.join(diff[:5])}); "
                         "resume with the same settings, or start a new --out")


def load_data(cfg: Config, split: str, in_channels: int, num_classes: int | None = None, like: Any = None):
    """A split of ``cfg.data``. With ``num_classes`` (the model's), a dataset that names another
    number of classes is an error; with ``like`` (the training split), another class list is one."""
    data = load_dataset(cfg.data.name, split, root=cfg.data.root, image_size=cfg.data.image_size,
                        in_channels=in_channels, download=cfg.data.download)
    names = getattr(data, "classes", None)
    if num_classes is not None and names is not None and len(names) != num_classes:
        raise ValueError(f"{cfg.data.name} ({split}) has {len(names)} classes but the model outputs {num_classes}; "
                         "pass the --data the model was trained on")
    ref = getattr(like, "classes", None) if like is not None else None
    if ref is not None and names is not None and list(ref) != list(names):
        raise ValueError(f"{cfg.data.name}: the {split} classes {list(names)} differ from the training classes {list(ref)}; "
                         "give both splits the same class folders (a renamed class would be scored as another)")
    return data


def own_val(cfg: Config, train_full: Any, in_channels: int) -> Any:
    """An ImageFolder's own ``val/`` split when it has one, else ``None``."""
    if cfg.data.name.startswith("imagefolder:") and (Path(cfg.data.name.split(":", 1)[1]) / "val").is_dir():
        return load_data(cfg, "val", in_channels, like=train_full)
    return None


def train_val_split(cfg: Config, train_full: Any, in_channels: int) -> tuple[Any, Any]:
    """Validation = an ImageFolder's own ``val/`` split when it has one, else a fixed-seed share of
    the training split (``train.val_fraction``, ``train.split_seed``). Never the test split."""
    val = own_val(cfg, train_full, in_channels)
    if val is not None:
        from torch.utils.data import Subset

        return Subset(train_full, range(len(train_full))), val
    return split_train_val(train_full, cfg.train.val_fraction, cfg.train.split_seed)


def load_model(cfg: Config, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model named in ``cfg.model`` (or in ``model.json`` beside the weights) and load weights.

    Raises:
        ValueError: missing model name, weights that do not fit the architecture.
    """
    side = model_json(cfg)
    state = load_state_dict(cfg.model.weights) if cfg.model.weights else None
    hint = shape_hints(state) if state is not None and not side else {}
    name = cfg.model.name or side.get("model") or "smallcnn"
    in_ch = cfg.model.in_channels or side.get("in_channels") or hint.get("in_channels") or 1
    n_cls = cfg.model.num_classes or side.get("num_classes") or hint.get("num_classes") or num_classes or 10
    trained = side.get("image_size")
    if trained and cfg.data.image_size is None:
        cfg.data.image_size = int(trained)  # later commands see the images at the size the model was trained at
    elif trained and int(cfg.data.image_size) != int(trained):  # type: ignore[arg-type]  # not None in this branch
        import warnings

        warnings.warn(f"model_doctor: --image-size {cfg.data.image_size} differs from the {trained} px the model was "
                      f"trained at ({Path(cfg.model.weights or '').with_name('model.json')}); drop --image-size to use "
                      f"{trained}", stacklevel=2)
    size = cfg.data.image_size or side.get("image_size") or 32
    small = cfg.model.small if cfg.model.small is not None else side.get("small")
    from .distributed import resolve_device

    device = resolve_device(cfg.runtime.device)
    model = build_model(name, in_channels=in_ch, num_classes=n_cls, image_size=size, small=small)
    if cfg.model.pretrained and not cfg.model.weights:
        from .models import load_pretrained

        load_pretrained(model, name)
    init = init_from(model, cfg.model.init, name) if cfg.model.init else None
    if state is not None:
        own = model.state_dict()
        bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and v.shape != own[k].shape]
        if bad:
            k, got, want = bad[0]
            raise ValueError(f"weights {cfg.model.weights!r} do not fit model {name!r} with {in_ch} input channels and "
                             f"{n_cls} classes: {k} is {list(got)} in the file but {list(want)} in the model"
                             f"{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}; pass the --num-classes / "
                             "--in-channels / --model the weights were trained with (or drop them to use model.json)")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights {cfg.model.weights!r} do not fit model {name!r} (missing {list(missing)[:3]}, "
                f"unexpected {list(unexpected)[:3]}); pass the --model the checkpoint was trained with"
            )
    check_finite(model, cfg.model.weights or name)
    model.to(device)
    meta = {"model": name, "in_channels": in_ch, "num_classes": n_cls, "image_size": size, "small": small,
            "classes": side.get("classes"), "default_layers": default_layers(name), "device": str(device)}
    if init is not None:
        meta["init"] = init
    return model, meta


def save_model(model: nn.Module, out: Path, meta: dict[str, Any], stem: str = "model") -> Path:
    """``{stem}.safetensors`` + ``model.json`` (architecture, channels, classes) for later commands."""
    path = out / f"{stem}.safetensors"
    if is_main():
        atomic_save_safetensors(path, model.state_dict())
        if meta.get("model"):  # a model handed to the library has no name a later command could build it from
            atomic_write_json(out / "model.json", {k: v for k, v in meta.items() if k != "device"})
    return path


def write_json(path: Path, obj: Any) -> None:
    if is_main():
        atomic_write_json(path, obj)


def save_run_config(cfg: Config, out: Path, extra: dict[str, Any]) -> None:
    """``config.yaml`` (resolved config, versions, the device) next to the outputs (rank 0)."""
    if is_main():
        device = (extra.get("model") or {}).get("device")
        save_config(cfg, out, {**extra, **({"device": device} if device else {})})


def workers(cfg: Config, device: str) -> int:
    """DataLoader workers for every loader a job opens (training, validation, selection, diagnosis,
    examination): the user's ``--workers``; else none on CPU (the data here is in memory or small)
    and up to 8 per GPU process on CUDA (the cores split between this machine's GPU processes,
    one left for the main process), so decoding does not starve the GPU."""
    from .distributed import cores_per_process

    if cfg.runtime.workers is not None:
        return cfg.runtime.workers
    if not device.startswith("cuda"):
        return 0
    return max(0, min(8, cores_per_process() - 1))


def image_channels(cfg: Config, log: Log) -> int:
    """The default ``in_channels`` for training: 3 when an ImageFolder's first image is in colour
    (so a colour cue is not silently turned into a grey level), else 1."""
    if not cfg.data.name.startswith("imagefolder:"):
        return 1
    from PIL import Image

    from .data.annotations import IMAGE_EXTS

    root = Path(cfg.data.name.split(":", 1)[1]) / "train"
    first = next((p for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_EXTS), None) if root.is_dir() else None
    if first is None:
        return 1
    try:
        with Image.open(first) as im:
            colour = im.mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    except Exception:
        return 1  # the dataset reports the unreadable file with its own message
    if colour:
        log(f"images are in colour ({first.name}: {im.mode}): training with 3 input channels (--in-channels 1 for grey)")
    return 3 if colour else 1


def trained_lr(weights: str | None, default: float = 0.01) -> float:
    """The learning rate the original was trained at: ``train.lr`` of the ``config.yaml`` that
    ``model-doctor train`` wrote beside the weights (read with ``safe_load``), else ``default``.
    Fine-tuning at the original's rate lets a constraint undo what that rate learned."""
    import math

    import yaml

    path = Path(weights or "").with_name("config.yaml")
    try:
        lr = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("train", {}).get("lr")
    except (OSError, yaml.YAMLError, AttributeError):
        return default
    return float(lr) if isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0 else default


def need_weights(cfg: Config, job: str) -> None:
    """A job that reads what a model learned refuses a randomly initialised one."""
    if not cfg.model.weights and not cfg.model.pretrained and not str(cfg.model.name or "").startswith("file:"):
        # a file: model's factory may return trained weights itself (checked for NaN by load_model)
        raise ValueError(f"{job} needs the trained model: pass --weights FILE (model.safetensors from `model-doctor "
                         "train`), or --pretrained for the architecture's ImageNet weights")


def warn_skipped(res: Any, what: str, log: Log) -> None:
    """A warning line when a run (a ``FitResult`` or a cached run's result dict) skipped non-finite steps."""
    n = res.get("skipped_steps", 0) if isinstance(res, dict) else res.skipped_steps
    if n:
        log(f"warning: {what}: {n} steps had a non-finite loss and were skipped (see metrics.jsonl); "
            "lower the learning rate or the constraint weights")


def check_diagnosis(diag: Diagnosis, model: nn.Module, num_classes: int, where: str) -> None:
    """A diagnosis of other weights: warn; of another class count or layers: refuse (one line)."""
    import warnings

    from .io import weights_fingerprint

    if diag.num_classes != num_classes:
        raise ValueError(f"the diagnosis in {where!r} has {diag.num_classes} classes but the model outputs {num_classes}; "
                         "diagnose this model (model-doctor diagnose) and pass that folder")
    diag.check_compatible(model)
    if weights_fingerprint(model) != diag.model_fingerprint:
        warnings.warn(f"model_doctor: the diagnosis in {where!r} was made for other weights (fingerprint "
                      f"{diag.model_fingerprint} vs {weights_fingerprint(model)}); its class profiles may not describe "
                      "this model — re-run diagnose on these weights", stacklevel=2)


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def fit_config(cfg: Config, device: str, **run: Any) -> FitConfig:
    """The :class:`FitConfig` of a job: ``train``'s optimiser and BatchNorm settings, the run's
    precision, the device's workers, and ``run`` (epochs, lr, batch size, seed, ... of this particular run)."""
    t = cfg.train
    base = {"epochs": t.epochs, "lr": t.lr, "momentum": t.momentum, "weight_decay": t.weight_decay,
            "batch_size": t.batch_size, "seed": t.seed, "val_fraction": t.val_fraction, "freeze_bn": t.freeze_bn,
            "sync_bn": t.sync_bn, "precision": cfg.runtime.precision, "num_workers": workers(cfg, device)}
    return FitConfig(**{**base, **run})
