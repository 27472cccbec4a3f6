"""``model-doctor report RUN_DIR``: one self-contained HTML page from a run's artifacts.

It reads what diagnose / examine / treat / analyze wrote (it recomputes nothing they hold), draws
the paper's figures with matplotlib, and renders them with Jinja2 (autoescape on: every class
name, path and config value is escaped). Images are embedded as data URIs and also written next
to the page under ``report_files/``; the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import torch

from ..diagnosis import Diagnosis
from ..io import atomic_write_bytes, atomic_write_text
from ..summary import read_treat_summary
from .template import TEMPLATE
from .treat_sections import group_table, pct_cell, verdict_section

__all__ = ["write_report", "SECTIONS"]

SECTIONS = ["verdict", "correlation", "confidence", "misclassified", "treatment", "maps", "curves", "robustness", "depth",
            "provenance"]



def _read_json(path: Path) -> Any:
    """A run artifact as JSON, or one line naming the file (a truncated write, a hand edit)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON ({type(exc).__name__} at line {getattr(exc, 'lineno', '?')}); "
                         "re-run the command that wrote it, or move the file out of the run folder") from None


def _read_jsonl(path: Path) -> list[Any]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} has a line that is not valid JSON ({type(exc).__name__}); re-run the command "
                         "that wrote it, or move the file out of the run folder") from None


def _find(run: Path, name: str) -> list[Path]:
    return sorted(p.parent for p in run.rglob(name))


def _section(sid: str, title: str) -> dict[str, Any]:
    return {"id": sid, "title": title, "note": "", "tables": [], "images": [], "pres": [], "empty": ""}


class _Page:
    """The sections being filled, the figures written so far, and whether any artifact was found."""

    def __init__(self, run: Path):
        self.run, self.files, self.count, self.found = run, run / "report_files", 0, False
        self.secs = {s: _section(s, t) for s, t in zip(SECTIONS, [
            "Verdict: did the treatment beat the CE-only control?", "Class x channel correlation (Fig. 2a)",
            "High- vs low-confidence images with derivative maps (Fig. 2b)", "Misclassified samples ranked by deviation",
            "Original vs treated vs CE-only control (Fig. 4)", "Derivative maps and Grad-CAM before/after treatment (Fig. 5)",
            "Training curves", "Discovery 2: robustness to feature noise (Fig. 3)", "Accuracy vs constrained layer depth (Fig. 6)",
            "Provenance: configs and versions"])}

    def add(self, sec: dict, png: bytes, alt: str) -> None:
        """A figure: written under ``report_files/`` and embedded in the page."""
        self.count += 1
        atomic_write_bytes(self.files / f"fig{self.count:02d}.png", png)
        sec["images"].append({"alt": alt, "data": base64.b64encode(png).decode()})


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` (+ ``report_files/*.png``); returns the page's path.

    Raises:
        ValueError: the folder holds no artifact of this tool.
    """
    from jinja2 import Environment

    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"run folder {str(run)!r} does not exist")
    page = _Page(run)
    _provenance(page)
    _correlation(page)
    _examination(page)
    depth_rows = _treatments(page)
    _original_curves(page)
    _depth(page, depth_rows)
    _robustness(page)
    if not page.found:
        raise ValueError(f"{str(run)!r} holds no model-doctor artifacts; point report at the --out of diagnose/examine/treat")
    for s in page.secs.values():
        if not (s["images"] or s["tables"] or s["pres"]):
            s["empty"] = "No artifact for this section in this run folder."
    html = Environment(autoescape=True).from_string(TEMPLATE).render(run_dir=str(run), sections=list(page.secs.values()))
    out = run / "report.html"
    atomic_write_text(out, html)
    return out


def _provenance(page: _Page) -> None:
    """Every config.yaml under the folder, verbatim."""
    run, secs = page.run, page.secs
    for cfg in sorted(run.rglob("config.yaml")):
        secs["provenance"]["pres"].append(f"# {cfg.relative_to(run)}\n" + cfg.read_text(encoding="utf-8"))
        page.found = True


def _correlation(page: _Page) -> None:
    """Correlation heatmaps, sparsity and shared relevant channels of each diagnosis."""
    from . import figures as fg

    run, secs, add = page.run, page.secs, page.add
    for d in _find(run, "diagnosis.json"):
        diag = Diagnosis.load(d)
        page.found = True
        sec = secs["correlation"]
        for layer in diag.layers:
            add(sec, fg.heatmap(diag.normalized(layer), diag.class_names, f"{d.relative_to(run)}: {layer} (min-max per class)"),
                f"correlation {layer}")
            sp = fg.sparsity(diag.correlation(layer))
            sec["tables"].append({"header": ["class", f"{layer}: share of gradient mass in top 10% channels", "samples"],
                                  "rows": [[c, f"{v:.2f}", n] for c, v, n in zip(diag.class_names, sp, diag.counts())]})
            pairs = fg.shared_pairs(diag.relevant_channels(layer), diag.class_names)
            sec["tables"].append({"header": ["class A", "class B", f"{layer}: shared relevant channels", "Jaccard"],
                                  "rows": [[p["a"], p["b"], p["shared"], f"{p['jaccard']:.2f}"] for p in pairs]})
        sec["note"] = "Bright = channels the class relies on. Pairs sharing many relevant channels are likely confusions."


def _examination(page: _Page) -> None:
    """Confidence pictures and the misclassified ranking of each examination."""
    from . import figures as fg

    run, secs, add = page.run, page.secs, page.add
    for e in _find(run, "examination.json"):
        from safetensors.torch import load_file

        page.found = True
        meta = _read_json(e / "examination.json")
        t = load_file(str(e / "examination.safetensors"))
        layer = meta["layers"][-1]
        if "highlight/high/images" in t:
            for key, label in (("high", "highest confidence"), ("low", "lowest confidence")):
                imgs = t[f"highlight/{key}/images"]
                add(secs["confidence"], fg.image_grid(imgs, [None, t[f"highlight/{key}/maps/{layer}"]],
                                                      [label, f"Σ|∂y/∂m| {layer}"]), f"{label} test images")
            if t["highlight/wrong/images"].shape[0]:
                add(secs["misclassified"], fg.image_grid(t["highlight/wrong/images"], [None, t[f"highlight/wrong/maps/{layer}"]],
                                                         ["most deviating errors", "derivative map"]), "misclassified, most deviating first")
        rows = [r for r in meta["ranked"] if r["label"] != r["prediction"]][:15]
        secs["misclassified"]["tables"].append({
            "header": ["dataset index", "label", "prediction", "confidence", "deviation", "most deviating channels"],
            "rows": [[r["index"], r["label"], r["prediction"], f"{r['confidence']:.3f}", f"{r['deviation']:.3f}",
                      "; ".join(f"{k}: {v}" for k, v in r["top_channels"].items())] for r in rows]})
        summ = e / "examine_summary.json"
        if summ.is_file():
            s = _read_json(summ)
            secs["misclassified"]["note"] = (f"{s['num_misclassified']} of {s['num_samples']} misclassified. AUROC for "
                                             f"detecting them: deviation {s.get('auroc_deviation')}, max-softmax {s.get('auroc_msp')}.")


def _treatments(page: _Page) -> list:
    """Every treat run under the folder; returns (layers, treated, control) rows for the depth figure."""
    treat_dirs = [d for d in _find(page.run, "summary.json") if "treated" in _read_json(d / "summary.json")]  # treat's, not train's
    depth_rows: list = []
    for d in treat_dirs:
        _treat_run(page, d, depth_rows)
    return depth_rows


def _treat_run(page: _Page, d: Path, depth_rows: list) -> None:
    """One treat run's sections: accuracy bars and table, verdict, annotations, maps, curves."""
    from . import figures as fg

    run, secs, add = page.run, page.secs, page.add
    page.found = True
    s = read_treat_summary(d / "summary.json")
    arms = s.arms()
    classes = s.classes or [str(i) for i in range(len(s.original.per_class))]
    runs = s.runs
    errs = {a: torch.tensor([r[a]["per_class"] for r in runs]).std(0).tolist() for a in ("treated", "control")
            if a in arms and len(runs) > 1}
    sec = secs["treatment"]
    add(sec, fg.bars(["overall"] + classes, {a: [v.test_acc] + v.per_class for a, v in arms.items()},
                     {a: [arms[a].test_acc_std] + errs[a] for a in errs} or None,
                     f"{d.relative_to(run)}: test accuracy ({len(runs)} seed(s))", "accuracy"), "per-class accuracy")
    delta = s.delta_treated_minus_control
    n = len(runs) or 1
    sec["tables"].append({"header": ["run", "original", "treated", "CE-only control", "treated − control"],
                          "rows": [[str(d.relative_to(run)), pct_cell(s.original.test_acc),
                                    pct_cell(s.treated.test_acc, s.treated.test_acc_std, n),
                                    pct_cell(s.control.test_acc, s.control.test_acc_std, n) if s.control else "–",
                                    pct_cell(delta["mean"], delta.get("std"), n, signed=True, unit=" pts") if delta else "–"]]})
    if s.treated.groups is not None:
        group_table(sec, s, n)
    verdict_section(secs["verdict"], s, str(d.relative_to(run)))
    layers = s.config.get("treat", {}).get("layers") or "default"
    depth_rows.append((str(layers), s.treated.test_acc, s.control.test_acc if s.control else None))
    ann = d / "annotations.safetensors"
    if ann.is_file():
        from safetensors.torch import load_file

        a = load_file(str(ann))
        add(secs["verdict"], fg.cutouts(a["images"], [a["coarse"], a["refined"]],
                                        ["image", "annotation", "foreground used"],
                                        ["refined" if ok else "as given" for ok in a["refined_ok"].tolist()]),
            f"{d.relative_to(run)}: annotations and the foreground the treatment and the reliance measures use")
    maps = d / "maps.safetensors"
    if maps.is_file():
        from safetensors import safe_open
        from safetensors.torch import load_file

        t = load_file(str(maps))
        with safe_open(str(maps), "pt") as fh:
            layer = (fh.metadata() or {}).get("layer", "")
        names = [a for a in ("original", "treated", "control") if f"{a}/derivative" in t]
        overlays = [None] + [t[f"{a}/{k}"] for a in names for k in ("derivative", "gradcam")]
        titles = ["image"] + [f"{a} {k}" for a in names for k in ("Σ|∂y/∂m|", "Grad-CAM")]
        add(secs["maps"], fg.image_grid(t["images"], overlays, titles), f"{d.relative_to(run)}: {layer}")
    for arm in ("treated", "control"):
        for m in sorted(d.rglob(f"{arm}/metrics.jsonl"))[:1]:
            rows = _read_jsonl(m)
            ep = [r["epoch"] for r in rows]
            ser = {k: [r[k] for r in rows] for k in rows[0] if k.startswith("loss_") or k == "val_acc"}
            add(secs["curves"], fg.lines(ep, ser, f"{m.relative_to(run)}", "epoch", "value"), f"{arm} curves")


def _depth(page: _Page, depth_rows: list) -> None:
    """Accuracy against the constrained layer, when runs constrained different layers."""
    from . import figures as fg

    add, secs = page.add, page.secs
    if len({r[0] for r in depth_rows}) > 1:
        depth_rows.sort()
        add(secs["depth"], fg.lines(list(range(len(depth_rows))), {"treated": [r[1] for r in depth_rows],
                                    "control": [r[2] or float("nan") for r in depth_rows]},
                                    "accuracy vs constrained layer (" + ", ".join(r[0] for r in depth_rows) + ")",
                                    "layer (run order)", "test accuracy"), "layer depth")
        secs["depth"]["tables"].append({"header": ["constrained layer(s)", "treated", "CE-only control"],
                                        "rows": [[r[0], f"{r[1]:.4f}", "–" if r[2] is None else f"{r[2]:.4f}"]
                                                 for r in depth_rows]})
        secs["depth"]["note"] = "Layers: " + ", ".join(r[0] for r in depth_rows)


def _original_curves(page: _Page) -> None:
    """The original's training curves."""
    from . import figures as fg

    run, secs, add = page.run, page.secs, page.add
    for m in sorted(run.rglob("original/metrics.jsonl")) + sorted(run.rglob("metrics.jsonl"))[:0]:
        rows = _read_jsonl(m)
        if rows:
            add(secs["curves"], fg.lines([r["epoch"] for r in rows], {k: [r[k] for r in rows] for k in rows[0]
                                         if k.startswith("loss_") or k == "val_acc"}, str(m.relative_to(run)), "epoch", "value"),
                "original training curves")


def _robustness(page: _Page) -> None:
    """Discovery 2 curves."""
    from . import figures as fg

    run, secs, add = page.run, page.secs, page.add
    for rdir in _find(run, "robustness.json"):
        page.found = True
        r = _read_json(rdir / "robustness.json")
        add(secs["robustness"], fg.lines(r["ranges"], {"normal": r["normal"], "adversarial (true label)": r["adversarial"],
                                                       "adversarial (same wrong label)": r["adversarial_same_wrong"]},
                                         f"noise at {r['layer']}, FGSM eps {r['eps']}, {r['samples']} samples",
                                         "noise range δ", "accuracy"), "robustness curves")
