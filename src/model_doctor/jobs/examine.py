"""``model-doctor examine``: Examine a split against a saved diagnosis: deviations, error detection, background reliance."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..diagnosis import Diagnosis, examine
from ..diagnosis.metrics import misclassification_auroc
from ..distributed import is_main
from ..runtime import (
    Log,
    check_diagnosis,
    check_resume,
    load_data,
    load_model,
    need_weights,
    out_dir,
    pct,
    save_run_config,
    versions,
    workers,
    write_json,
)
from ..treating.text import reliance_table

__all__ = ["run_examine"]


def run_examine(cfg: Config, log: Log = print) -> dict[str, Any]:
    """Examine a split against a saved diagnosis; report the misclassification AUROC."""
    out = out_dir(cfg, "examine")
    if not cfg.examine.diagnosis:
        raise ValueError("examine needs a diagnosis; pass --diagnosis DIR (the --out of `model-doctor diagnose`)")
    need_weights(cfg, "examine")
    diag = Diagnosis.load(cfg.examine.diagnosis)
    model, meta = load_model(cfg, diag.num_classes)
    check_diagnosis(diag, model, meta["num_classes"], cfg.examine.diagnosis)
    if cfg.runtime.resume and (out / "examine_summary.json").is_file():  # finished: nothing to redo, nothing rewritten
        import json

        check_resume(cfg, out)
        log(f"the examination in {out} is finished; nothing to resume (--overwrite to examine again)")
        return json.loads((out / "examine_summary.json").read_text(encoding="utf-8"))
    data = load_data(cfg, cfg.examine.split, meta["in_channels"], meta["num_classes"])
    indices = list(range(min(len(data), cfg.examine.limit))) if cfg.examine.limit else None
    save_run_config(cfg, out, {"command": "examine", "versions": versions(), "model": meta})
    ex = examine(model, diag, data, indices=indices, batch_size=cfg.examine.batch_size, top_k=cfg.examine.top_k,
                 precision=cfg.runtime.precision, num_workers=workers(cfg, meta["device"]))
    if is_main():
        ex.save(out)
    summary: dict[str, Any] = {"num_samples": len(ex.indices), "num_misclassified": int(ex.misclassified.sum()),
                               "accuracy": float((~ex.misclassified).double().mean())}
    summary.update(misclassification_auroc(ex.deviation, ex.confidence, ex.misclassified))
    if cfg.examine.groups:
        from ..data.groups import chance_worst_group, group_accuracy, load_groups

        summary["groups"] = g = group_accuracy(model, data, *load_groups(cfg.examine.groups, data, cfg.examine.split))
        mean, std = chance_worst_group([n for n in g["sizes"].values() if n], int(meta["num_classes"]))
        g["chance"] = {"mean": mean, "std": std}
        log(f"worst-group accuracy {pct(g['worst'])} ({g['worst_group']}), average {pct(g['average'])} over "
            f"{len(g['per_group'])} groups of the {cfg.examine.split} split; random guessing "
            f"{100 * mean:.1f} ± {100 * std:.1f} % worst-group at these group sizes")
    if cfg.examine.masks:
        from ..data.annotations import load_masks
        from ..data.workflow import with_masks
        from ..treatment.pool import AnnotatedPool
        from ..treatment.reliance import background_reliance

        found = load_masks(cfg.examine.mask_format, cfg.examine.masks, dataset_root=cfg.examine.masks)
        pool = AnnotatedPool.from_dataset(with_masks(data, found, 0)).refine(cfg.examine.refine, erode_px=cfg.examine.erode)
        summary["background_reliance"] = rel = background_reliance(model, pool)
        summary["refine"] = pool.refine_report()
        log(f"background reliance on {rel['images']} annotated {cfg.examine.split} images ({pool.refined.sum()} foregrounds "
            f"refined by {cfg.examine.refine}): accuracy {pct(rel['clean_acc'])}, with another image's background "
            f"{pct(rel['swap_acc'])} ({rel['pairs']} swaps), from the background alone {pct(rel['bg_only_acc'])} "
            f"(chance {pct(rel['chance'])}), {pct(rel['bg_grad_share'])} of the input gradient outside the masks")
        log(reliance_table({"model": rel}, meta.get("classes")))
    write_json(out / "examine_summary.json", summary)
    auroc = summary.get("auroc_deviation")
    log(f"examined {summary['num_samples']} {cfg.examine.split} samples, {summary['num_misclassified']} misclassified; "
        + (f"AUROC deviation {auroc:.3f} vs max-softmax {summary['auroc_msp']:.3f}" if auroc is not None else
           "AUROC undefined (needs both correct and wrong predictions)")
        + f" -> {out / 'examination.json'}")
    return summary
