"""``model-doctor select``: Export the lowest-confidence training images per class for annotation."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..data.base import class_names_of
from ..distributed import is_main
from ..runtime import Log, check_resume, load_data, load_model, need_weights, out_dir, save_run_config, versions, workers

__all__ = ["run_select"]


def run_select(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Export the lowest-confidence training images per class for annotation (LabelMe stubs)."""
    from ..data.base import IndexedSubset
    from ..data.workflow import export_low_confidence
    from ..diagnosis import predict

    out = out_dir(cfg, "select")
    need_weights(cfg, "select")
    model, meta = load_model(cfg)
    data = load_data(cfg, "train", meta["in_channels"], meta["num_classes"])
    labels, _pred, probs = predict(model, IndexedSubset(data), num_workers=workers(cfg, meta["device"]), desc="select")
    names = meta.get("classes") or class_names_of(data, meta["num_classes"])
    check_resume(cfg, out)
    save_run_config(cfg, out, {"command": "select", "versions": versions(), "model": meta})
    rows = export_low_confidence(data, labels, probs, cfg.select.per_class, out, names) if is_main() else []
    kept = sum(1 for r in rows if r.get("kept"))
    log(f"exported {len(rows)} low-confidence training images with empty LabelMe files to {out}; annotate them "
        f"(labelme {out}), then: model-doctor treat ... --masks {out} --mask-format labelme --beta 1"
        + (f"; {kept} LabelMe files that already held shapes were kept as they were" if kept else ""))
    return {"count": len(rows), "out": str(out)}
