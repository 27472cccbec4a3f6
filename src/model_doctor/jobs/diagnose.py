"""``model-doctor diagnose``: Diagnose a trained model on its training split (Eq. 2-4)."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..diagnosis import diagnose, estimate_diagnosis
from ..distributed import is_main
from ..io import atomic_write_json
from ..runtime import Log, check_resume, load_data, load_model, need_weights, out_dir, save_run_config, versions, workers

__all__ = ["run_diagnose"]


def run_diagnose(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Diagnose the model on its training split; save the :class:`Diagnosis` into ``cfg.out``."""
    out = out_dir(cfg, "diagnose")
    if not cfg.diagnose.estimate:
        need_weights(cfg, "diagnose")
    model, meta = load_model(cfg)
    if cfg.runtime.resume and (out / ("estimate.json" if cfg.diagnose.estimate else "diagnosis.json")).is_file():
        return _finished(cfg, out, log)  # after load_model, which resolves the settings config.yaml records
    data = load_data(cfg, "train", meta["in_channels"], meta["num_classes"])
    d = cfg.diagnose
    save_run_config(cfg, out, {"command": "diagnose", "versions": versions(), "model": meta})
    if d.estimate:
        est = estimate_diagnosis(model, data, d.layers or meta["default_layers"], num_classes=meta["num_classes"],
                                 samples_per_class=d.samples_per_class, noise_draws=d.noise_draws, noise=d.noise,
                                 batch_size=d.batch_size, precision=cfg.runtime.precision)
        if is_main():
            atomic_write_json(out / "estimate.json", est)
        log(f"estimate: about {est['estimate_seconds']:.0f} s here for {est['candidates']} candidates "
            f"({est['seconds_per_candidate'] * 1e3:.2f} ms each) and at most {est['selected_at_most']} selected "
            f"({est['seconds_per_selected'] * 1e3:.2f} ms each at {', '.join(est['layers'])}); "
            f"{est['gflops']:.0f} GFLOPs -> {out / 'estimate.json'}")
        return est
    diag = diagnose(model, data, layers=d.layers or meta["default_layers"], num_classes=meta["num_classes"],
                    samples_per_class=d.samples_per_class, min_confidence=d.min_confidence, noise=d.noise,
                    noise_draws=d.noise_draws, batch_size=d.batch_size, seed=d.seed, reduce=d.reduce,  # type: ignore[arg-type]  # a str, validated as abs|relu by config
                    theta=d.theta, allow_empty_classes=d.allow_empty_classes, class_names=meta.get("classes"),
                    precision=cfg.runtime.precision, num_workers=workers(cfg, meta["device"]))
    if is_main():
        diag.save(out)
    counts = diag.counts()
    log(f"diagnosed layers {', '.join(diag.layers)} with {sum(counts)} samples "
        f"({min(counts)}-{max(counts)} per class) -> {out / 'diagnosis.json'}")
    return {"layers": diag.layers, "counts": counts, "out": str(out)}


def _finished(cfg: Config, out, log: Log) -> dict[str, Any]:
    """``--resume`` on a finished diagnosis (same settings): nothing to redo, nothing rewritten."""
    import json

    from ..diagnosis import Diagnosis

    check_resume(cfg, out)
    if cfg.diagnose.estimate:
        log(f"the estimate in {out} is finished; nothing to resume (--overwrite to estimate again)")
        return json.loads((out / "estimate.json").read_text(encoding="utf-8"))
    diag = Diagnosis.load(out)
    log(f"the diagnosis in {out} is finished ({', '.join(diag.layers)}); nothing to resume (--overwrite to diagnose again)")
    return {"layers": diag.layers, "counts": diag.counts(), "out": str(out)}
