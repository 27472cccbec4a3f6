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
from .diagnosis import Diagnosis, diagnose, examine
from .io import atomic_save_safetensors, atomic_write_json, load_state_dict
from .training import FitConfig, evaluate, fit, split_train_val
from .zoo import build_model

__all__ = ["load_model", "run_train", "run_diagnose", "run_examine", "versions"]

Log = Callable[[str], None]


def versions() -> dict[str, str]:
    import torchvision

    return {"model_doctor": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}


def _sidecar(weights: str | None) -> dict[str, Any]:
    if not weights:
        return {}
    side = Path(weights).with_name("model.json")
    return json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}


def _out_dir(cfg: Config) -> Path:
    if not cfg.out:
        raise ValueError("no output folder; pass --out DIR")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def load_data(cfg: Config, split: str, in_channels: int):
    return load_dataset(cfg.data.name, split, root=cfg.data.root, image_size=cfg.data.image_size,
                        in_channels=in_channels, download=cfg.data.download)


def load_model(cfg: Config, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model named in ``cfg.model`` (or in ``model.json`` beside the weights) and load weights.

    Raises:
        ValueError: missing model name, weights that do not fit the architecture.
    """
    side = _sidecar(cfg.model.weights)
    name = cfg.model.name or side.get("model") or "smallcnn"
    in_ch = cfg.model.in_channels or side.get("in_channels") or 1
    n_cls = cfg.model.num_classes or side.get("num_classes") or num_classes or 10
    size = cfg.data.image_size or side.get("image_size") or 32
    model = build_model(name, in_channels=in_ch, num_classes=n_cls, image_size=size)
    if cfg.model.weights:
        state = load_state_dict(cfg.model.weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights {cfg.model.weights!r} do not fit model {name!r} (missing {list(missing)[:3]}, "
                f"unexpected {list(unexpected)[:3]}); pass the --model the checkpoint was trained with"
            )
    meta = {"model": name, "in_channels": in_ch, "num_classes": n_cls, "image_size": size,
            "classes": side.get("classes")}
    return model, meta


def save_model(model: nn.Module, out: Path, meta: dict[str, Any], stem: str = "model") -> Path:
    """``{stem}.safetensors`` + ``model.json`` (architecture, channels, classes) for later commands."""
    path = out / f"{stem}.safetensors"
    atomic_save_safetensors(path, model.state_dict())
    atomic_write_json(out / "model.json", meta)
    return path


def run_train(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Train the original classifier (paper protocol) and evaluate it once on the test split."""
    out = _out_dir(cfg)
    in_ch = cfg.model.in_channels or 1
    train_full = load_data(cfg, "train", in_ch)
    classes = class_names_of(train_full, len(getattr(train_full, "classes", [])) or (cfg.model.num_classes or 10))
    cfg.model.num_classes = cfg.model.num_classes or len(classes)
    torch.manual_seed(cfg.train.seed)  # initial weights are a function of the seed
    model, meta = load_model(cfg, len(classes))
    meta.update({"classes": classes, "dataset": cfg.data.name})
    t = cfg.train
    fcfg = FitConfig(epochs=t.epochs, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                     batch_size=t.batch_size, seed=t.seed, val_fraction=t.val_fraction)
    tr, va = split_train_val(train_full, t.val_fraction, t.seed)
    save_config(cfg, out, {"versions": versions(), "train_size": len(tr), "val_size": len(va)})
    res = fit(model, tr, va, fcfg, meta["num_classes"], out_dir=out, resume=t.resume, tag="train",
              log=lambda r: log(f"epoch {r['epoch']}: ce {r.get('loss_ce', float('nan')):.4f} val_acc {r['val_acc']:.4f}"))
    test = evaluate(model, load_data(cfg, "test", in_ch), meta["num_classes"])
    path = save_model(model, out, meta)
    summary = {"model": meta["model"], "dataset": cfg.data.name, "best_epoch": res.best_epoch,
               "val_acc": res.best_val_acc, "test_acc": test["acc"], "test_per_class": test["per_class"],
               "weights": str(path), "versions": versions()}
    atomic_write_json(out / "summary.json", summary)
    log(f"trained {meta['model']} on {cfg.data.name}: val_acc {res.best_val_acc:.4f} (epoch {res.best_epoch}), "
        f"test_acc {test['acc']:.4f} -> {path}")
    return summary


def run_diagnose(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Diagnose the model on its training split; save the :class:`Diagnosis` into ``cfg.out``."""
    out = _out_dir(cfg)
    model, meta = load_model(cfg)
    data = load_data(cfg, "train", meta["in_channels"])
    d = cfg.diagnose
    save_config(cfg, out, {"versions": versions(), "model": meta})
    diag = diagnose(model, data, layers=d.layers, num_classes=meta["num_classes"],
                    samples_per_class=d.samples_per_class, min_confidence=d.min_confidence, noise=d.noise,
                    noise_draws=d.noise_draws, batch_size=d.batch_size, seed=d.seed, reduce=d.reduce,  # type: ignore[arg-type]
                    theta=d.theta, allow_empty_classes=d.allow_empty_classes, class_names=meta.get("classes"))
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
    diag = Diagnosis.load(cfg.examine.diagnosis)
    model, meta = load_model(cfg, diag.num_classes)
    data = load_data(cfg, cfg.examine.split, meta["in_channels"])
    indices = list(range(min(len(data), cfg.examine.limit))) if cfg.examine.limit else None
    save_config(cfg, out, {"versions": versions(), "model": meta})
    ex = examine(model, diag, data, indices=indices, batch_size=cfg.examine.batch_size, top_k=cfg.examine.top_k)
    ex.save(out)
    summary: dict[str, Any] = {"num_samples": len(ex.indices), "num_misclassified": int(ex.misclassified.sum()),
                               "accuracy": float((~ex.misclassified).double().mean())}
    summary.update(misclassification_auroc(ex.deviation, ex.confidence, ex.misclassified))
    atomic_write_json(out / "examine_summary.json", summary)
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
