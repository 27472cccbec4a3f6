"""The jobs behind the CLI commands, as library calls taking a :class:`Config`.

Each job writes its outputs and its resolved ``config.yaml`` into ``cfg.out`` and returns a
small summary dict. Nothing here parses arguments (that is ``cli.py``) or computes method
internals (that is ``diagnosis/`` and ``treatment/``).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import __version__
from .config import Config, save_config
from .data.base import class_names_of
from .data.datasets import load_dataset
from .diagnosis import Diagnosis, diagnose, estimate_diagnosis, examine
from .distributed import barrier, is_main
from .io import atomic_save_safetensors, atomic_write_json, load_state_dict
from .training import FitConfig, evaluate, fit, split_train_val
from .zoo import build_model, default_layers

__all__ = ["load_model", "run_train", "run_diagnose", "run_examine", "run_treat", "run_select", "versions"]

Log = Callable[[str], None]


def versions() -> dict[str, str]:
    import torchvision

    return {"model_doctor": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}


def _sidecar(weights: str | None) -> dict[str, Any]:
    if not weights:
        return {}
    side = Path(weights).with_name("model.json")
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(side)!r} is not valid JSON ({exc}); fix or delete it and pass --model") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(side)!r} must hold a JSON object; fix or delete it and pass --model")
    return data


def _out_dir(cfg: Config) -> Path:
    """Create ``cfg.out`` and hold its lock (rank 0) for the rest of this process."""
    from .distributed import resolve_device

    resolve_device(cfg.device)  # every job fails early, before any work, on a device it cannot use
    if not cfg.out:
        raise ValueError("no output folder; pass --out DIR")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; choose a folder")
    out.mkdir(parents=True, exist_ok=True)
    if is_main():
        from .io import lock_folder

        lock_folder(out)
    return out


def _check_resume(cfg: Config, out: Path) -> None:
    """``--resume`` must continue the same run: refuse when config.yaml records other settings."""
    import yaml

    old_path = out / "config.yaml"
    if not cfg.train.resume or not old_path.is_file():
        return
    old = yaml.safe_load(old_path.read_text(encoding="utf-8")) or {}
    new = cfg.to_dict()
    diff = []
    for section, values in new.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if (section, key) == ("train", "resume"):
                continue
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


def train_val_split(cfg: Config, train_full: Any, in_channels: int) -> tuple[Any, Any]:
    """Validation = an ImageFolder's own ``val/`` split when it has one, else a fixed-seed share of
    the training split (``train.val_fraction``, ``train.split_seed``). Never the test split."""
    if cfg.data.name.startswith("imagefolder:") and (Path(cfg.data.name.split(":", 1)[1]) / "val").is_dir():
        from torch.utils.data import Subset

        return Subset(train_full, range(len(train_full))), load_data(cfg, "val", in_channels, like=train_full)
    return split_train_val(train_full, cfg.train.val_fraction, cfg.train.split_seed)


def load_model(cfg: Config, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model named in ``cfg.model`` (or in ``model.json`` beside the weights) and load weights.

    Raises:
        ValueError: missing model name, weights that do not fit the architecture.
    """
    side = _sidecar(cfg.model.weights)
    if not cfg.model.name and str(side.get("model", "")).startswith("file:"):
        # a weights folder must never make us run code: file: models only from the user's own --model/config
        raise ValueError(f"{str(Path(cfg.model.weights or '').with_name('model.json'))!r} names the code model "
                         f"{side['model']!r}; a model.json beside weights may not run code — pass --model "
                         f"{side['model']} yourself if you trust that file")
    name = cfg.model.name or side.get("model") or "smallcnn"
    in_ch = cfg.model.in_channels or side.get("in_channels") or 1
    n_cls = cfg.model.num_classes or side.get("num_classes") or num_classes or 10
    trained = side.get("image_size")
    if trained and cfg.data.image_size is None:
        cfg.data.image_size = int(trained)  # later commands see the images at the size the model was trained at
    elif trained and int(cfg.data.image_size) != int(trained):  # type: ignore[arg-type]
        import warnings

        warnings.warn(f"model_doctor: --image-size {cfg.data.image_size} differs from the {trained} px the model was "
                      f"trained at ({Path(cfg.model.weights or '').with_name('model.json')}); drop --image-size to use "
                      f"{trained}", stacklevel=2)
    size = cfg.data.image_size or side.get("image_size") or 32
    small = cfg.model.small if cfg.model.small is not None else side.get("small")
    from .distributed import resolve_device

    device = resolve_device(cfg.device)
    model = build_model(name, in_channels=in_ch, num_classes=n_cls, image_size=size, small=small)
    if cfg.model.pretrained and not cfg.model.weights:
        from .zoo import load_pretrained

        load_pretrained(model, name)
    if cfg.model.weights:
        state = load_state_dict(cfg.model.weights)
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
    model.to(device)
    meta = {"model": name, "in_channels": in_ch, "num_classes": n_cls, "image_size": size, "small": small,
            "classes": side.get("classes"), "default_layers": default_layers(name), "device": str(device)}
    return model, meta


def save_model(model: nn.Module, out: Path, meta: dict[str, Any], stem: str = "model") -> Path:
    """``{stem}.safetensors`` + ``model.json`` (architecture, channels, classes) for later commands."""
    path = out / f"{stem}.safetensors"
    if is_main():
        atomic_save_safetensors(path, model.state_dict())
        atomic_write_json(out / "model.json", {k: v for k, v in meta.items() if k != "device"})
    return path


def _write_json(path: Path, obj: Any) -> None:
    if is_main():
        atomic_write_json(path, obj)


def _save_config(cfg: Config, out: Path, extra: dict[str, Any]) -> None:
    if is_main():
        device = (extra.get("model") or {}).get("device")
        save_config(cfg, out, {**extra, **({"device": device} if device else {})})


def _workers(cfg: Config, device: str) -> int:
    """DataLoader workers for every loader a job opens (training, validation, selection, diagnosis,
    examination): the user's ``--workers``; else none on CPU (the data here is in memory or small)
    and up to 8 per GPU process on CUDA (the cores split between this machine's GPU processes,
    one left for the main process), so decoding does not starve the GPU."""
    from .distributed import cores_per_process

    if cfg.train.workers is not None:
        if cfg.train.workers < 0:
            raise ValueError(f"workers={cfg.train.workers}; use 0 or more")
        return cfg.train.workers
    if not device.startswith("cuda"):
        return 0
    return max(0, min(8, cores_per_process() - 1))


def _image_channels(cfg: Config, log: Log) -> int:
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


def _trained_lr(weights: str | None, default: float = 0.01) -> float:
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


def _need_weights(cfg: Config, job: str) -> None:
    """A job that reads what a model learned refuses a randomly initialised one."""
    if not cfg.model.weights and not cfg.model.pretrained:
        raise ValueError(f"{job} needs the trained model: pass --weights FILE (model.safetensors from `model-doctor "
                         "train`), or --pretrained for the architecture's ImageNet weights")


def run_train(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Train the original classifier (paper protocol) and evaluate it once on the test split."""
    out = _out_dir(cfg)
    if cfg.model.in_channels is None:
        cfg.model.in_channels = _image_channels(cfg, log)
    in_ch = cfg.model.in_channels
    train_full = load_data(cfg, "train", in_ch)
    cfg.data.image_size = cfg.data.image_size or int(train_full[0][0].shape[-1])  # model.json records what it saw
    classes = class_names_of(train_full, len(getattr(train_full, "classes", [])) or (cfg.model.num_classes or 10))
    cfg.model.num_classes = cfg.model.num_classes or len(classes)
    torch.manual_seed(cfg.train.seed)  # initial weights are a function of the seed
    model, meta = load_model(cfg, len(classes))
    meta.update({"classes": classes, "dataset": cfg.data.name})
    t = cfg.train
    fcfg = FitConfig(epochs=t.epochs, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                     batch_size=t.batch_size, seed=t.seed, val_fraction=t.val_fraction, freeze_bn=t.freeze_bn,
                     sync_bn=t.sync_bn, precision=t.precision, num_workers=_workers(cfg, meta["device"]))
    tr, va = train_val_split(cfg, train_full, in_ch)
    _check_resume(cfg, out)
    _save_config(cfg, out, {"versions": versions(), "train_size": len(tr), "val_size": len(va), "model": meta})
    res = fit(model, tr, va, fcfg, meta["num_classes"], out_dir=out, resume=t.resume, tag="train", say=log,
              log=lambda r: log(f"epoch {r['epoch']}: ce {r.get('loss_ce', float('nan')):.4f} val_acc {r['val_acc']:.4f}"))
    _warn_skipped(res, "train", log)
    test = evaluate(model, load_data(cfg, "test", in_ch, meta["num_classes"], like=train_full), meta["num_classes"])
    path = save_model(model, out, meta)
    summary = {"model": meta["model"], "dataset": cfg.data.name, "best_epoch": res.best_epoch,
               "val_acc": res.best_val_acc, "test_acc": test["acc"], "test_per_class": test["per_class"],
               "weights": str(path), "versions": versions()}
    _write_json(out / "summary.json", summary)
    log(f"trained {meta['model']} on {cfg.data.name}: val_acc {res.best_val_acc:.4f} (epoch {res.best_epoch}), "
        f"test_acc {test['acc']:.4f} -> {path}")
    return summary


def run_diagnose(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Diagnose the model on its training split; save the :class:`Diagnosis` into ``cfg.out``."""
    out = _out_dir(cfg)
    if not cfg.diagnose.estimate:
        _need_weights(cfg, "diagnose")
    model, meta = load_model(cfg)
    data = load_data(cfg, "train", meta["in_channels"], meta["num_classes"])
    d = cfg.diagnose
    _save_config(cfg, out, {"versions": versions(), "model": meta})
    if d.estimate:
        est = estimate_diagnosis(model, data, d.layers or meta["default_layers"], num_classes=meta["num_classes"],
                                 samples_per_class=d.samples_per_class, noise_draws=d.noise_draws, noise=d.noise,
                                 batch_size=d.batch_size, precision=d.precision)
        if is_main():
            atomic_write_json(out / "estimate.json", est)
        log(f"estimate: about {est['estimate_seconds']:.0f} s here for {est['candidates']} candidates "
            f"({est['seconds_per_candidate'] * 1e3:.2f} ms each) and at most {est['selected_at_most']} selected "
            f"({est['seconds_per_selected'] * 1e3:.2f} ms each at {', '.join(est['layers'])}); "
            f"{est['gflops']:.0f} GFLOPs -> {out / 'estimate.json'}")
        return est
    diag = diagnose(model, data, layers=d.layers or meta["default_layers"], num_classes=meta["num_classes"],
                    samples_per_class=d.samples_per_class, min_confidence=d.min_confidence, noise=d.noise,
                    noise_draws=d.noise_draws, batch_size=d.batch_size, seed=d.seed, reduce=d.reduce,  # type: ignore[arg-type]
                    theta=d.theta, allow_empty_classes=d.allow_empty_classes, class_names=meta.get("classes"),
                    precision=d.precision, num_workers=_workers(cfg, meta["device"]))
    if is_main():
        diag.save(out)
    counts = diag.counts()
    log(f"diagnosed layers {', '.join(diag.layers)} with {sum(counts)} samples "
        f"({min(counts)}-{max(counts)} per class) -> {out / 'diagnosis.json'}")
    return {"layers": diag.layers, "counts": counts, "out": str(out)}


def run_examine(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Examine a split against a saved diagnosis; report the misclassification AUROC."""
    out = _out_dir(cfg)
    if not cfg.examine.diagnosis:
        raise ValueError("examine needs a diagnosis; pass --diagnosis DIR (the --out of `model-doctor diagnose`)")
    _need_weights(cfg, "examine")
    diag = Diagnosis.load(cfg.examine.diagnosis)
    model, meta = load_model(cfg, diag.num_classes)
    _check_diagnosis(diag, model, meta["num_classes"], cfg.examine.diagnosis)
    data = load_data(cfg, cfg.examine.split, meta["in_channels"], meta["num_classes"])
    indices = list(range(min(len(data), cfg.examine.limit))) if cfg.examine.limit else None
    _save_config(cfg, out, {"versions": versions(), "model": meta})
    ex = examine(model, diag, data, indices=indices, batch_size=cfg.examine.batch_size, top_k=cfg.examine.top_k,
                 precision=cfg.examine.precision, num_workers=_workers(cfg, meta["device"]))
    if is_main():
        ex.save(out)
    summary: dict[str, Any] = {"num_samples": len(ex.indices), "num_misclassified": int(ex.misclassified.sum()),
                               "accuracy": float((~ex.misclassified).double().mean())}
    summary.update(misclassification_auroc(ex.deviation, ex.confidence, ex.misclassified))
    if cfg.examine.masks:
        from .data.annotations import load_masks
        from .data.workflow import with_masks
        from .treatment.space import AnnotatedPool, background_reliance

        found = load_masks(cfg.examine.mask_format, cfg.examine.masks, dataset_root=cfg.examine.masks)
        pool = AnnotatedPool.from_dataset(with_masks(data, found, 0)).refine(cfg.examine.refine)
        summary["background_reliance"] = rel = background_reliance(model, pool)
        summary["refine"] = pool.refine_report()
        log(f"background reliance on {rel['images']} annotated {cfg.examine.split} images ({pool.refined.sum()} foregrounds "
            f"refined by {cfg.examine.refine}): accuracy {_pct(rel['clean_acc'])}, with another image's background "
            f"{_pct(rel['swap_acc'])} ({rel['pairs']} swaps), from the background alone {_pct(rel['bg_only_acc'])} "
            f"(chance {_pct(rel['chance'])}), {_pct(rel['bg_grad_share'])} of the input gradient outside the masks")
        log(reliance_table({"model": rel}, meta.get("classes")))
    _write_json(out / "examine_summary.json", summary)
    auroc = summary.get("auroc_deviation")
    log(f"examined {summary['num_samples']} {cfg.examine.split} samples, {summary['num_misclassified']} misclassified; "
        + (f"AUROC deviation {auroc:.3f} vs max-softmax {summary['auroc_msp']:.3f}" if auroc is not None else
           "AUROC undefined (needs both correct and wrong predictions)")
        + f" -> {out / 'examination.json'}")
    return summary


def misclassification_auroc(deviation: torch.Tensor, confidence: torch.Tensor, wrong: torch.Tensor) -> dict[str, Any]:
    """AUROC for detecting wrong predictions: deviation (higher = wrong), 1 - max-softmax, and their
    combination (mean of the two ranks, no fitting)."""
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    y = wrong.numpy().astype(int)
    if y.min() == y.max():
        return {"auroc_deviation": None, "auroc_msp": None, "auroc_combined": None}
    dev, msp = deviation.double().numpy(), (1.0 - confidence.double()).numpy()
    comb = (rankdata(dev) + rankdata(msp)) / 2.0
    return {"auroc_deviation": float(roc_auc_score(y, dev)), "auroc_msp": float(roc_auc_score(y, msp)),
            "auroc_combined": float(roc_auc_score(y, comb))}


def _arm_summary(res: Any, test: dict[str, Any], val: float) -> dict[str, Any]:
    return {"val_acc": val, "test_acc": test["acc"], "per_class": test["per_class"],
            "best_epoch": getattr(res, "best_epoch", None), "skipped_steps": getattr(res, "skipped_steps", 0)}


def _mean_std(values: list[float]) -> dict[str, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if len(values) > 1 else 0.0}


def build_constraint(cfg: Config, diag: Diagnosis | None, seed: int, beta: float | None = None, pools: Any = None,
                     expand: int = 0, layers: list[str] | None = None):
    """The loss terms of a treated arm from ``cfg.treat`` (see :mod:`model_doctor.treatment.plan`)."""
    from .treatment.plan import build_terms, weights_of

    b = weights_of(cfg.treat.beta)[0] if beta is None else beta
    return build_terms(cfg.treat, diag, seed, b, pools, expand, layers)


def _default_layers(model: nn.Module, meta: dict[str, Any], spec: Any, example: torch.Tensor) -> list[str]:
    """Layer names from a spec (or the architecture's default; "auto" = the last conv in execution order)."""
    from .layers import resolve_layers

    spec = spec or meta["default_layers"]
    return [n for n, _ in resolve_layers(model, spec, example[None])]


def _treat_masks(cfg: Config, train_full: Any, tr: Any, log: Log) -> tuple[Any, Any, int]:
    """(training part with expanded masks, pools, expansion) for a run that uses masks."""
    from torch.utils.data import Subset

    from .data.masks import ExpandedMasks, scaled_expansion
    from .treatment.plan import make_pools

    t = cfg.treat
    size = int(train_full[0][0].shape[-1])
    expand = t.expand if t.expand is not None else scaled_expansion(30, size)
    if t.masks:
        from .data.annotations import load_masks
        from .data.workflow import with_masks

        found = load_masks(t.mask_format, t.masks, dataset_root=t.masks)
        raw_full, exp_full = with_masks(train_full, found, 0), with_masks(train_full, found, expand)
    elif len(train_full[0]) >= 4:  # a dataset with its own masks (decoy-*)
        raw_full, exp_full = train_full, ExpandedMasks(train_full, expand)
    else:
        raise ValueError("beta/rrr need foreground masks; pass --masks DIR (see `model-doctor select`) or use a "
                         "dataset with masks (decoy-digits, decoy-fashion-mnist)")
    raw_tr, exp_tr = Subset(raw_full, tr.indices), Subset(exp_full, tr.indices)
    pools = make_pools(raw_tr, exp_tr, t.holdout, t.annotated_per_class, cfg.train.split_seed, t.refine)
    skipped = raw_full.skip_report() if hasattr(raw_full, "skip_report") else "skipped: none"
    pools.skipped_report = skipped
    log(f"masks: {pools.describe()} (expansion {expand} px for the gradient penalties); annotations {skipped}")
    return pools.masked_train, pools, expand


def run_treat(cfg: Config, log: Log = print, train_data: Any = None, test_data: Any = None) -> dict[str, Any]:
    """Fine-tune the original with the constraints and, with ``treat.control``, a CE-only control
    with the identical schedule, data order and seed; pick each arm's best epoch and the weight
    without test data (:mod:`model_doctor.treatment.plan`); evaluate original, treated and control
    on the test split once, at the end. Writes ``summary.json`` (with background reliance on the
    held-out annotated images and a verdict), per-arm weights, metrics and checkpoints.

    ``train_data`` / ``test_data`` replace the named dataset (e.g. a ``MaskedDataset`` for beta > 0).
    """
    import copy

    from .treatment.plan import choose_weight, needs_diagnosis, reliance_verdicts, verdict, weights_of
    from .treatment.space import background_reliance, selection_score

    if cfg.diagnose.estimate:
        raise ValueError("diagnose.estimate is set, but only `model-doctor diagnose` estimates; remove it from the "
                         "config to treat, or run `model-doctor diagnose --estimate`")

    out = _out_dir(cfg)
    t = cfg.treat
    betas = weights_of(t.beta)
    for name in ("alpha", "rrr"):
        if getattr(t, name) < 0:
            raise ValueError(f"{name}={getattr(t, name)}; constraint weights must be >= 0")
    if not cfg.model.weights:
        raise ValueError("treat needs the trained original; pass --weights (from `model-doctor train`)")
    original, meta = load_model(cfg)
    if t.lr is None:
        t.lr = _trained_lr(cfg.model.weights)
        log(f"fine-tuning at learning rate {t.lr:g} (the original's; --lr to change)")
    n_cls = meta["num_classes"]
    train_full = train_data if train_data is not None else load_data(cfg, "train", meta["in_channels"], n_cls)
    tr, va = train_val_split(cfg, train_full, meta["in_channels"])
    _check_resume(cfg, out)
    pools, expand = None, 0
    uses_masks = any(betas) or t.rrr
    if uses_masks:
        tr, pools, expand = _treat_masks(cfg, train_full, tr, log)
    _save_config(cfg, out, {"versions": versions(), "model": meta, "train_size": len(tr), "val_size": len(va),
                            **({"masks": pools.summary(), "expand": expand} if pools else {})})

    if pools is not None and is_main():
        _save_annotations(out, pools)
    diag_dir = Path(t.diagnosis) if t.diagnosis else out / "diagnosis"
    layers = _default_layers(original, meta, t.layers or cfg.diagnose.layers, train_full[0][0])
    if not needs_diagnosis(t, betas):  # counterfactual / attribution / input / RRR: no diagnosis needed
        diag = None
    elif t.diagnosis or (diag_dir / "diagnosis.json").is_file():
        diag = Diagnosis.load(diag_dir)
    else:
        d = cfg.diagnose
        # diagnosis samples come from the training part only, never from validation
        diag = diagnose(original, tr, layers=d.layers or meta["default_layers"], num_classes=n_cls, samples_per_class=d.samples_per_class,
                        min_confidence=d.min_confidence, noise=d.noise, noise_draws=d.noise_draws,
                        batch_size=d.batch_size, seed=d.seed, reduce=d.reduce, theta=d.theta,  # type: ignore[arg-type]
                        allow_empty_classes=d.allow_empty_classes, class_names=meta.get("classes"),
                        precision=cfg.train.precision, num_workers=_workers(cfg, meta["device"]))  # one precision per command
        if is_main():
            diag.save(diag_dir)
        barrier()
        log(f"diagnosed the original at {', '.join(diag.layers)} -> {diag_dir}")
    if diag is not None:
        _check_diagnosis(diag, original, n_cls, str(diag_dir))
        layers = list(diag.layers) if not t.layers else layers
    held = pools.select if pools is not None else None
    report = (pools.report if pools.report is not None else pools.select) if pools is not None else None

    def select(model: nn.Module) -> dict[str, Any]:
        """The no-test-data selection rule: validation accuracy and held-out background-swap accuracy."""
        val = evaluate(model, va, n_cls)["acc"]
        if held is None:
            return {"select_score": val}
        rel = background_reliance(model, held, seed=cfg.train.split_seed)
        return {"held_swap_acc": rel["swap_acc"], "held_bg_grad_share": rel["bg_grad_share"],
                "select_score": selection_score(val, rel)}

    orig_val = evaluate(original, va, n_cls)["acc"]
    arms = [f"treated-beta{b:g}" if len(betas) > 1 else "treated" for b in betas]
    weight_of = dict(zip(arms, betas))
    all_arms = arms + (["control"] if t.control else [])
    finished: dict[int, dict[str, Any]] = {}
    for seed in t.seeds:
        seed_dir = out / f"seed{seed}"
        results = {}
        for arm in all_arms:
            model = copy.deepcopy(original)
            fcfg = FitConfig(epochs=t.epochs, lr=t.lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay,
                             batch_size=t.batch_size, seed=seed, val_fraction=cfg.train.val_fraction, freeze_bn=t.freeze_bn,
                             sync_bn=cfg.train.sync_bn, precision=cfg.train.precision,
                             num_workers=_workers(cfg, meta["device"]))
            terms = build_constraint(cfg, diag, seed, weight_of[arm], pools, expand, layers) if arm != "control" else None
            res = fit(model, tr, va, fcfg, n_cls, terms=terms, out_dir=seed_dir / arm, resume=cfg.train.resume, tag=arm,
                      select=select if held is not None else None, say=log,
                      log=lambda r, a=arm, s=seed: log(
                          f"seed {s} {a} epoch {r['epoch']}: " + " ".join(f"{k[5:]} {v:.4f}" for k, v in r.items() if k.startswith("loss_"))
                          + f" val_acc {r['val_acc']:.4f}"
                          + (f" held-out swap acc {r['held_swap_acc']:.4f}" if r.get("held_swap_acc") is not None else "")))
            _warn_skipped(res, f"seed {seed} {arm}", log)
            save_model(model, seed_dir / arm, meta)
            results[arm] = (model, res)
        # the weight for this seed: the treated arm whose chosen epoch scores best (never test data)
        scores = {weight_of[a]: float(results[a][1].best_row.get("select_score", results[a][1].best_val_acc)) for a in arms}
        chosen = choose_weight(scores)
        results["treated"] = results[arms[betas.index(chosen)]]
        finished[seed] = {"results": results, "beta": chosen, "scores": scores}

    # the test split is read here, once, after every arm has finished
    test = test_data if test_data is not None else load_data(cfg, "test", meta["in_channels"], n_cls, like=train_full)
    orig_test = evaluate(original, test, n_cls)
    rel_orig = background_reliance(original, report, seed=cfg.train.split_seed) if report is not None else None
    report_arms = ["treated"] + (["control"] if t.control else [])
    runs = []
    for seed, fin in finished.items():
        row: dict[str, Any] = {"seed": seed, "chosen_beta": fin["beta"], "selection_scores": fin["scores"]}
        for arm in report_arms + ([a for a in arms if a != "treated"] if len(arms) > 1 else []):
            model, res = fin["results"][arm]
            row[arm] = _arm_summary(res, evaluate(model, test, n_cls), res.best_val_acc)
            if report is not None:
                row[arm]["background_reliance"] = background_reliance(model, report, seed=cfg.train.split_seed)
        runs.append(row)
    summary: dict[str, Any] = {"original": {"val_acc": orig_val, "test_acc": orig_test["acc"], "per_class": orig_test["per_class"],
                                            **({"background_reliance": rel_orig} if rel_orig else {})}}
    for arm in report_arms:
        accs = [r[arm]["test_acc"] for r in runs]
        per_class = torch.tensor([r[arm]["per_class"] for r in runs], dtype=torch.float64).mean(0).tolist()
        summary[arm] = {"test_acc": _mean_std(accs)["mean"], "test_acc_std": _mean_std(accs)["std"],
                        "val_acc": _mean_std([r[arm]["val_acc"] for r in runs])["mean"], "per_class": per_class}
        if report is not None:
            rels = [r[arm]["background_reliance"] for r in runs]
            summary[arm]["background_reliance"] = {
                **{k: _mean_std([x[k] for x in rels]) for k in ("swap_acc", "bg_only_acc", "bg_only_conf", "bg_grad_share")},
                "per_class": {c: {k: _mean_std([x["per_class"][c][k] for x in rels])["mean"] for k in v}
                              for c, v in rels[0]["per_class"].items()}}
    verdicts = []
    if t.control:
        deltas = [r["treated"]["test_acc"] - r["control"]["test_acc"] for r in runs]
        summary["delta_treated_minus_control"] = _mean_std(deltas)
        verdicts.append(verdict(deltas, "test accuracy"))
        if pools is not None:
            verdicts += reliance_verdicts(runs, pools)
    summary["verdict"] = verdicts
    summary["selection"] = {
        "rule": "each arm's epoch, and the weight, by the mean of validation accuracy and held-out background-swap "
                "accuracy (validation accuracy alone without held-out annotated images); test data never used",
        "space_method": t.space_method if any(betas) else None, "weights": betas,
        "chosen_beta": {str(s): f["beta"] for s, f in finished.items()}}
    if pools is not None:
        summary["masks"] = pools.summary()
    if is_main():
        _save_treatment_maps(out, original, {s: f["results"] for s, f in finished.items()}, test,
                             layers[-1], report_arms)
    summary.update({"runs": runs, "classes": meta.get("classes"), "config": cfg.to_dict(), "versions": versions(),
                    "note": "test split evaluated once, after training; epochs and weights chosen without test data"})
    _write_json(out / "summary.json", summary)
    msg = f"original {_pct(orig_test['acc'])} | treated {_pct(summary['treated']['test_acc'])}"
    if t.control:
        msg += f" | control (CE only) {_pct(summary['control']['test_acc'])}"
    log(f"test accuracy: {msg} -> {out / 'summary.json'}")
    if rel_orig is not None:
        for k, what in (("swap_acc", "background-swap accuracy"), ("bg_only_acc", "background-only accuracy")):
            log(f"{what} on held-out annotated report images: original {_pct(rel_orig[k])} | treated "
                f"{_pct(summary['treated']['background_reliance'][k]['mean'])}"
                + (f" | control {_pct(summary['control']['background_reliance'][k]['mean'])}" if t.control else ""))
    if rel_orig is not None:
        log(reliance_table({"original": rel_orig, **{a: summary[a]["background_reliance"] for a in report_arms}},
                           meta.get("classes")))
    if len(betas) > 1:
        log("chosen weight per seed (no test data): " + ", ".join(f"seed {s}: {f['beta']:g}" for s, f in finished.items()))
    for v in verdicts:
        log(f"verdict: {v['text']}")
    return summary


def reliance_table(rels: dict[str, dict[str, Any]], classes: list[str] | None = None) -> str:
    """Per class, for each model: background-swap accuracy and background-only accuracy (a plain
    text table: which classes lean on their background)."""
    first = next(iter(rels.values()))["per_class"]
    names = list(rels)
    head = "class".ljust(16) + "".join(f"{n[:10] + ' swap':>17}{n[:10] + ' bg-only':>20}" for n in names)
    lines = ["background reliance per class (swap: label kept on another background; bg-only: label from the "
             "background alone, lower is better)", head]
    for c in first:
        name = (classes[int(c)] if classes and int(c) < len(classes) else str(c))[:15]
        lines.append(name.ljust(16) + "".join(f"{_pct(rels[n]['per_class'][c]['swap_acc']):>17}"
                                              f"{_pct(rels[n]['per_class'][c]['bg_only_acc']):>20}" for n in names))
    return "\n".join(lines)


def _warn_skipped(res: Any, what: str, log: Log) -> None:
    if res.skipped_steps:
        log(f"warning: {what}: {res.skipped_steps} steps had a non-finite loss and were skipped (see metrics.jsonl); "
            "lower the learning rate or the constraint weights")


def _check_diagnosis(diag: Diagnosis, model: nn.Module, num_classes: int, where: str) -> None:
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


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def describe_layers(name: str, in_channels: int = 3, image_size: int = 32, small: bool | None = None) -> list[dict[str, Any]]:
    """Conv layers of a model in forward execution order, with channel counts and default marks."""
    from .layers import conv_layers_in_order

    if image_size < 1 or in_channels < 1:
        raise ValueError(f"--image-size {image_size}, --in-channels {in_channels}; both must be positive")
    model = build_model(name, in_channels=in_channels, num_classes=10, image_size=image_size, small=small)
    defaults = default_layers(name)
    try:
        convs = conv_layers_in_order(model, torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as exc:
        raise ValueError(f"{name} cannot run on {image_size}x{image_size} images ({str(exc).splitlines()[0][:80]}); "
                         "pass a larger --image-size (e.g. 32)") from None
    chosen = {convs[-1][0]} if defaults == "auto" else {defaults}
    rows = [{"index": i, "name": n, "in": m.in_channels, "out": m.out_channels,
             "kernel": "x".join(map(str, m.kernel_size)), "stride": m.stride[0], "default": n in chosen}
            for i, (n, m) in enumerate(convs)]
    if defaults != "auto" and not any(r["default"] for r in rows):
        mod = model.get_submodule(defaults)
        rows.append({"index": len(rows), "name": defaults, "in": "", "out": "", "kernel": type(mod).__name__,
                     "stride": "", "default": True, "block": True})
    return rows


def run_select(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Export the lowest-confidence training images per class for annotation (LabelMe stubs)."""
    from .data.base import IndexedSubset
    from .data.workflow import export_low_confidence
    from .diagnosis import predict

    out = _out_dir(cfg)
    if not cfg.select.low_confidence:
        raise ValueError("only --low-confidence selection is implemented")
    if cfg.select.per_class < 1:
        raise ValueError(f"per_class={cfg.select.per_class}; use a positive integer (paper: 20)")
    _need_weights(cfg, "select")
    model, meta = load_model(cfg)
    data = load_data(cfg, "train", meta["in_channels"], meta["num_classes"])
    labels, _pred, probs = predict(model, IndexedSubset(data), num_workers=_workers(cfg, meta["device"]), desc="select")
    names = meta.get("classes") or class_names_of(data, meta["num_classes"])
    rows = export_low_confidence(data, labels, probs, cfg.select.per_class, out, names) if is_main() else []
    _save_config(cfg, out, {"versions": versions(), "model": meta})
    log(f"exported {len(rows)} low-confidence training images with empty LabelMe files to {out}; annotate them "
        f"(labelme {out}), then: model-doctor treat ... --masks {out} --mask-format labelme --beta 1")
    return {"count": len(rows), "out": str(out)}


def _save_annotations(out: Path, pools: Any, count: int = 10) -> None:
    """Up to ``count`` annotated images (report set first) with their annotation and the refined
    foreground, for the report: ``annotations.safetensors``."""
    from .io import atomic_save_safetensors

    parts = [p for p in (pools.report, pools.select, pools.train) if p is not None]
    take = [(p, i) for p in parts for i in range(len(p))][:count]
    atomic_save_safetensors(out / "annotations.safetensors", {
        "images": torch.stack([p.images[i] for p, i in take]).float().cpu(),
        "coarse": torch.stack([p.coarse[i, 0] for p, i in take]).float().cpu(),
        "refined": torch.stack([p.foreground[i, 0] for p, i in take]).float().cpu(),
        "refined_ok": torch.tensor([bool(p.refined[i]) for p, i in take])}, metadata={"refine": pools.refine})


def _save_treatment_maps(out: Path, original: nn.Module, finished: dict, test: Any, layer: str, arms: list[str],
                         count: int = 8) -> None:
    """Derivative maps and Grad-CAM of the same test images for original / treated / control
    (first seed), for the report's Fig. 5 view: ``maps.safetensors``."""
    from .analysis import derivative_and_gradcam
    from .io import atomic_save_safetensors

    p = next(original.parameters())
    n = min(count, len(test))
    x = torch.stack([test[i][0] for i in range(n)]).to(p.device, p.dtype)
    y = torch.tensor([int(test[i][1]) for i in range(n)])
    tensors = {"images": x.cpu().float(), "labels": y}
    models = {"original": original, **{a: finished[next(iter(finished))][a][0] for a in arms}}
    for name, model in models.items():
        d, c, pred = derivative_and_gradcam(model, layer, x)
        tensors.update({f"{name}/derivative": d.cpu(), f"{name}/gradcam": c.cpu(), f"{name}/pred": pred.cpu()})
    atomic_save_safetensors(out / "maps.safetensors", tensors, metadata={"layer": layer})


def run_robustness(cfg: Config, layer: str | None, eps: float, samples: int, log: Log = print) -> dict[str, Any]:
    """Discovery 2 (paper Fig. 3) on the test split: ``robustness.json`` in ``cfg.out``."""
    from .analysis import robustness_curves

    out = _out_dir(cfg)
    model, meta = load_model(cfg)
    data = load_data(cfg, "test", meta["in_channels"], meta["num_classes"])
    lay = layer or (meta["default_layers"] if meta["default_layers"] != "auto" else None)
    if lay is None:
        from .layers import resolve_layers

        lay = resolve_layers(model, "auto", data[0][0][None])[0][0]
    res = robustness_curves(model, data, lay, samples=samples, eps=eps)
    _save_config(cfg, out, {"versions": versions(), "model": meta, "robustness": {"layer": lay, "eps": eps}})
    _write_json(out / "robustness.json", res)
    log(f"robustness at {lay} over {res['samples']} samples (FGSM eps {eps}): noise range {res['ranges']}\n"
        f"  normal accuracy      {[round(v, 3) for v in res['normal']]}\n"
        f"  adversarial accuracy {[round(v, 3) for v in res['adversarial']]} -> {out / 'robustness.json'}")
    return res
