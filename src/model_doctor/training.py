"""Supervised fine-tuning loop shared by ``train`` (CE only) and ``treat`` (CE + constraints).

Why one loop: the treated run and its CE-only control must have the *identical* schedule, data
order and seed, so both go through this function and differ only in ``terms``.

Protocol (paper, "Treating Stage": same optimiser as the original training): SGD, momentum 0.9,
weight decay 5e-4, cosine schedule. Validation is carved from the training split with a fixed
seed; the best epoch is chosen on validation only. The test split never enters this module.

Checkpoints are written atomically every epoch; data order and random state are functions of
``(seed, epoch)``, so a killed run resumed from its last checkpoint reproduces the uninterrupted
run exactly (on CPU, deterministic kernels).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from .data.base import loader_for, sized
from .distributed import GlobalBatchSampler, barrier, is_main, wrap_ddp
from .io import atomic_save_safetensors, atomic_write_bytes
from .precision import autocast, check_precision
from .progress import progress

__all__ = ["FitConfig", "FitResult", "fit", "evaluate", "split_train_val", "LossTerms", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """Training diverged (too many NaN/inf losses, or NaN/inf weights). ``best_state``, ``best_row``,
    ``history`` and ``skipped`` hold what the run had before it (set by :func:`fit`), so a caller
    can keep the last good epoch and report the divergence instead of losing the run."""

    best_state: dict[str, torch.Tensor] | None = None
    best_row: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    skipped: int = 0


class LossTerms(Protocol):
    """Extra loss terms computed from the same forward pass as the CE loss."""

    def attach(self, model: nn.Module) -> contextlib.AbstractContextManager: ...

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, batch: tuple, step: int) -> dict[str, torch.Tensor]: ...


@dataclass
class FitConfig:
    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    seed: int = 0
    val_fraction: float = 0.1
    freeze_bn: bool = False
    sync_bn: bool = False
    precision: str = "fp32"          # fp32 | bf16 (autocast); fp16 is refused
    max_nonfinite: int = 10
    num_workers: int = 0

    def validate(self) -> None:
        check_precision(self.precision)
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs}; use at least 1")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr}; use a positive learning rate (paper: 0.01)")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction}; use a fraction in (0, 1), e.g. 0.1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}; use a positive integer")


@dataclass
class FitResult:
    best_epoch: int
    best_val_acc: float
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_steps: int = 0
    best_row: dict[str, Any] = field(default_factory=dict)  # the chosen epoch's metrics row (incl. selection)


def split_train_val(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Fixed-seed random split of the *training* data into (train, validation) subsets."""
    n = sized(dataset)
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise ValueError(f"val_fraction={val_fraction} leaves no training samples out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(10_007 + seed)).tolist()
    return Subset(dataset, sorted(perm[n_val:])), Subset(dataset, sorted(perm[:n_val]))


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, num_classes: int, batch_size: int = 256,
             num_workers: int = 0) -> dict[str, Any]:
    """Accuracy, mean CE and per-class accuracy in eval mode (training flag restored)."""
    p = next(model.parameters())
    was = model.training
    model.eval()
    correct = torch.zeros(num_classes, dtype=torch.float64)
    total = torch.zeros(num_classes, dtype=torch.float64)
    loss_sum = 0.0
    try:
        for batch in loader_for(dataset, batch_size, num_workers=num_workers, device=p.device):
            x = batch[0].to(p.device, p.dtype, non_blocking=True)
            y = torch.as_tensor(batch[1]).to(p.device, non_blocking=True)
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            hit = (logits.argmax(1) == y).double().cpu()
            total.index_add_(0, y.cpu(), torch.ones_like(hit))
            correct.index_add_(0, y.cpu(), hit)
    finally:
        model.train(was)
    n = float(total.sum())
    per_class = (correct / total.clamp(min=1)).tolist()
    return {"acc": float(correct.sum()) / max(n, 1.0), "loss": loss_sum / max(n, 1.0), "per_class": per_class,
            "n": int(n), "counts": [int(c) for c in total.tolist()]}


def _tensorboard(path: Path):
    """A SummaryWriter when the ``tensorboard`` package is installed, else None (JSONL only)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


def _set_bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _state_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@dataclass
class _State:
    """What a training run carries from epoch to epoch (and what its checkpoint holds)."""

    opt: torch.optim.Optimizer
    sched: Any
    steps_per_epoch: int
    start_epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    skipped: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)


def fit(model: nn.Module, train_set: Dataset, val_set: Dataset, cfg: FitConfig, num_classes: int, *,
        terms: LossTerms | None = None, out_dir: str | Path | None = None, resume: bool = False,
        tag: str = "train", log: Callable[[dict[str, Any]], None] | None = None,
        select: Callable[[nn.Module], dict[str, Any]] | None = None,
        say: Callable[[str], None] | None = None) -> FitResult:
    """Train ``model`` in place with CE (+ ``terms``); leave it holding the best-validation weights.

    ``select(model)`` (optional) is called after each epoch's validation; its dict is logged in the
    epoch's row and its ``"select_score"`` replaces validation accuracy as the criterion for the
    best epoch (e.g. :func:`model_doctor.treatment.reliance.selection_score`; never test data).

    Files in ``out_dir`` (when given): ``checkpoint.pt`` (every epoch, atomic), ``best.safetensors``
    and ``metrics.jsonl`` (one line per epoch).

    Raises:
        NonFiniteLossError: more than ``cfg.max_nonfinite`` steps with a NaN/inf loss.
    """
    cfg.validate()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(GlobalBatchSampler(len(train_set), cfg.batch_size, 0))  # type: ignore[arg-type]  # sized datasets only
    st = _State(opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch), steps_per_epoch,
                best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
    out = Path(out_dir) if out_dir is not None and is_main() else None  # only rank 0 writes
    if resume and out_dir is not None and (Path(out_dir) / "checkpoint.pt").is_file():
        _restore(st, model, Path(out_dir) / "checkpoint.pt", cfg, tag, say)
    writer = _tensorboard(out / "tensorboard") if out else None
    was_training = model.training
    net = wrap_ddp(model, cfg.sync_bn)  # the model itself in a single process
    try:
        with terms.attach(model) if terms is not None else contextlib.nullcontext():
            for epoch in range(st.start_epoch, cfg.epochs):
                sums, n_steps = _train_epoch(st, model, net, train_set, cfg, terms, tag, epoch)
                val = evaluate(model, val_set, num_classes, batch_size=max(256, cfg.batch_size),
                               num_workers=cfg.num_workers)
                row = {"tag": tag, "epoch": epoch + 1, **{f"loss_{k}": v / max(n_steps, 1) for k, v in sums.items()},
                       "val_acc": val["acc"], "val_loss": val["loss"], "lr": st.opt.param_groups[0]["lr"],
                       "skipped_steps": st.skipped}
                _end_epoch(st, model, row, epoch, select, out, writer, cfg, tag)
                if log and is_main():
                    log(row)
    except NonFiniteLossError as exc:
        exc.best_state, exc.history, exc.skipped = st.best_state, st.history, st.skipped
        exc.best_row = next((r for r in st.history if r["epoch"] == st.best_epoch), {})
        raise
    finally:
        model.train(was_training)
        if writer is not None:
            writer.close()
    model.load_state_dict(st.best_state)
    best_row = next((r for r in st.history if r["epoch"] == st.best_epoch), {})
    return FitResult(best_epoch=st.best_epoch, best_val_acc=float(best_row.get("val_acc", st.best_acc)),
                     history=st.history, skipped_steps=st.skipped, best_row=best_row)


def _restore(st: _State, model: nn.Module, path: Path, cfg: FitConfig, tag: str, say: Callable[[str], None] | None) -> None:
    """Continue from ``checkpoint.pt``: the same tag and settings, or a one-line error."""
    ck = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    if ck.get("tag") != tag:
        raise ValueError(f"{path} is a {ck.get('tag')!r} checkpoint, not {tag!r}; use another --out")
    before = json.loads(ck.get("config", "{}"))
    diff = [f"{k}: {before[k]!r} -> {v!r}" for k, v in asdict(cfg).items() if k in before and before[k] != v]
    if diff:
        raise ValueError(f"{path} was written with other settings ({'; '.join(diff)}); resume with the same "
                         "settings or start a new --out")
    if say is not None and is_main():
        say(f"{tag}: resuming from epoch {ck['epoch'] + 1} of {cfg.epochs} ({path})")
    model.load_state_dict(ck["model"])
    st.opt.load_state_dict(ck["optimizer"])
    st.sched.load_state_dict(ck["scheduler"])
    st.start_epoch, st.best_acc, st.best_epoch = ck["epoch"] + 1, ck["best_acc"], ck["best_epoch"]
    st.skipped, st.history, st.best_state = ck["skipped"], json.loads(ck["history"]), ck["best_state"]


def _train_epoch(st: _State, model: nn.Module, net: nn.Module, train_set: Dataset, cfg: FitConfig,
                 terms: LossTerms | None, tag: str, epoch: int) -> tuple[dict[str, float], int]:
    """One epoch of SGD steps; returns the summed loss terms and the number of finite steps."""
    p = next(model.parameters())
    device, dtype = p.device, p.dtype
    torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout/noise RNG: a function of (seed, epoch)
    sampler = GlobalBatchSampler(len(train_set), cfg.batch_size, cfg.seed * 7919 + epoch)  # type: ignore[arg-type]  # sized
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.num_workers,
                                         pin_memory=device.type == "cuda", persistent_workers=False)
    model.train()
    if cfg.freeze_bn:
        _set_bn_eval(model)
    sums: dict[str, float] = {}
    n_steps = 0
    for i, batch in enumerate(progress(loader, desc=f"{tag} epoch {epoch + 1}/{cfg.epochs}")):
        step = epoch * st.steps_per_epoch + i
        x = batch[0].to(device, dtype, non_blocking=True)
        y = torch.as_tensor(batch[1]).to(device, non_blocking=True)
        with autocast(device, cfg.precision):
            logits = net(x)
            parts = {"ce": F.cross_entropy(logits.float(), y)}
            if terms is not None:
                parts.update({k: v.float() for k, v in terms(logits, y, tuple(batch), step).items()})
        loss = parts["ce"]
        for k, v in parts.items():  # the same order and sums as sum(parts.values())
            loss = loss + v if k != "ce" else loss
        st.opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            st.skipped += 1
            if st.skipped > cfg.max_nonfinite:
                raise NonFiniteLossError(
                    f"{tag}: {st.skipped} steps had a non-finite loss (last: { {k: float(v.detach()) for k, v in parts.items()} }) "
                    f"at learning rate {cfg.lr:g}; lower the learning rate or the constraint weights")
            st.sched.step()
            continue
        loss.backward()
        st.opt.step()
        st.sched.step()
        n_steps += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
    if n_steps == 0 or not all(bool(torch.isfinite(q).all()) for q in model.parameters()):
        raise NonFiniteLossError(
            f"{tag} epoch {epoch + 1} diverged: " + ("every step's loss was NaN/inf" if n_steps == 0 else
                                                    "the weights became NaN/inf")
            + f" at learning rate {cfg.lr:g}; lower the learning rate (or the constraint weights)")
    return sums, n_steps


def _end_epoch(st: _State, model: nn.Module, row: dict[str, Any], epoch: int,
               select: Callable[[nn.Module], dict[str, Any]] | None, out: Path | None, writer: Any,
               cfg: FitConfig, tag: str) -> None:
    """Score the epoch (selection rule or validation accuracy), keep the best weights, write the
    metrics, the checkpoint and TensorBoard (rank 0), and wait for the other ranks."""
    score = row["val_acc"]
    if select is not None:
        row.update(select(model))
        score = float(row.get("select_score", score))
    st.history.append(row)
    if score > st.best_acc:
        st.best_acc, st.best_epoch = score, epoch + 1
        st.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if out:
            atomic_save_safetensors(out / "best.safetensors", st.best_state)
    if out:
        # rewritten whole from the history so a resumed run never duplicates lines
        atomic_write_bytes(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in st.history).encode())
        atomic_write_bytes(out / "checkpoint.pt", _state_bytes({
            "tag": tag, "epoch": epoch, "model": model.state_dict(), "optimizer": st.opt.state_dict(),
            "scheduler": st.sched.state_dict(), "best_acc": st.best_acc, "best_epoch": st.best_epoch,
            "skipped": st.skipped, "history": json.dumps(st.history), "best_state": st.best_state,
            "config": json.dumps(asdict(cfg))}))
    if writer is not None:
        for k, v in row.items():
            if isinstance(v, (int, float)) and k != "epoch":
                writer.add_scalar(f"{tag}/{k}", v, epoch + 1)
        writer.flush()
    barrier()
