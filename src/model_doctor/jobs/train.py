"""``model-doctor train``: Train the original classifier."""

from __future__ import annotations

from typing import Any

import torch

from ..config import Config
from ..data.base import class_names_of
from ..distributed import GlobalBatchSampler
from ..runtime import (
    Log,
    check_resume,
    fit_config,
    image_channels,
    load_data,
    load_model,
    out_dir,
    save_model,
    save_run_config,
    train_val_split,
    versions,
    warn_skipped,
    write_json,
)
from ..study import divergence
from ..training import evaluate, fit

__all__ = ["run_train"]


def run_train(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Train the original classifier (paper protocol) and evaluate it once on the test split."""
    out = out_dir(cfg, "train")
    if cfg.model.in_channels is None:
        cfg.model.in_channels = image_channels(cfg, log)
    in_ch = cfg.model.in_channels
    train_full = load_data(cfg, "train", in_ch)
    cfg.data.image_size = cfg.data.image_size or int(train_full[0][0].shape[-1])  # model.json records what it saw
    classes = class_names_of(train_full, len(getattr(train_full, "classes", [])) or (cfg.model.num_classes or 10))
    cfg.model.num_classes = cfg.model.num_classes or len(classes)
    torch.manual_seed(cfg.train.seed)  # initial weights are a function of the seed
    model, meta = load_model(cfg, len(classes))
    if "init" in meta:
        i = meta["init"]
        log(f"--init: {i['taken']} tensors from {i['file']}; starting fresh: {', '.join(i['fresh']) or 'none'}")
    meta.update({"classes": classes, "dataset": cfg.data.name})
    fcfg = fit_config(cfg, meta["device"])
    tr, va = train_val_split(cfg, train_full, in_ch)
    check_resume(cfg, out)
    save_run_config(cfg, out, {"command": "train", "versions": versions(), "train_size": len(tr), "val_size": len(va),
                               "model": meta})
    res = fit(model, tr, va, fcfg, meta["num_classes"], out_dir=out, resume=cfg.runtime.resume, tag="train", say=log,
              log=lambda r: log(f"epoch {r['epoch']}: ce {r.get('loss_ce', float('nan')):.4f} val_acc {r['val_acc']:.4f}"))
    warn_skipped(res, "train", log)
    test = evaluate(model, load_data(cfg, "test", in_ch, meta["num_classes"], like=train_full), meta["num_classes"])
    path = save_model(model, out, meta)
    summary = {"model": meta["model"], "dataset": cfg.data.name, "best_epoch": res.best_epoch,
               "val_acc": res.best_val_acc, "test_acc": test["acc"], "test_per_class": test["per_class"],
               "weights": str(path), "versions": versions()}
    steps = fcfg.epochs * len(GlobalBatchSampler(len(tr), fcfg.batch_size, 0))
    why = divergence({"skipped_steps": res.skipped_steps, "steps": steps})
    if why:
        summary["diverged"] = [{"arm": "train", "why": why}]
        log(f"training diverged: {why}; lower --lr (now {fcfg.lr:g}) and run again with --overwrite")
    write_json(out / "summary.json", summary)
    log(f"trained {meta['model']} on {cfg.data.name}: val_acc {res.best_val_acc:.4f} (epoch {res.best_epoch}), "
        f"test_acc {test['acc']:.4f} -> {path}")
    return summary
