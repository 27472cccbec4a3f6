"""The benchmark scripts run (small budget) and print the tables they promise."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("script,expect", [("bench_treat.py", "treat step ÷ plain step"),
                                           ("bench_diagnose.py", "whole ÷ limit")])
def test_benchmark_small_budget(script, expect, tmp_path):
    out = tmp_path / "result.md"
    res = subprocess.run([sys.executable, "-m", "benchmarks." + script.removesuffix(".py"), "--budget", "small", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    assert expect in text and "Command: `python -m benchmarks." in text and text.count("\n|") >= 4
    if script == "bench_diagnose.py":  # every arm and every scaling row measured, the cost model fitted
        assert "| smallcnn | features.8 (128×8×8) |" in text and "| resnet18 | layer4.1.conv2 (512×4×4) |" in text
        assert text.count("Fit: a = ") == 2 and text.count("| 10 | 2 | 20 |") == text.count("| 10 | 1 | 20 |") == 1 and "—" not in text


def _run(script: str, tmp_path, *extra: str) -> str:
    out = tmp_path / f"{script}.md"
    res = subprocess.run([sys.executable, "-m", "benchmarks." + script.removesuffix(".py"), "--budget", "small", "--out", str(out),
                          "--cache", str(tmp_path / "cache"), *extra], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    assert "Command: `python -m benchmarks." in text and "not the original train/test split" in text
    return text


@pytest.mark.slow
@pytest.mark.shared_data
def test_e1_then_e3_small(shared_data, tmp_path):
    e1 = _run("bench_e1_channel.py", tmp_path, "--root", str(shared_data))
    assert "| tinycnn | features.8 |" in e1 and "Δ treated − control" in e1
    assert (tmp_path / "bench_e1_channel.py.json").is_file()
    originals = sorted((tmp_path / "cache" / "e1").glob("*/tinycnn/seed*/original/result.json"))
    stamps = [p.stat().st_mtime_ns for p in originals]
    e3 = _run("bench_e3_auroc.py", tmp_path, "--root", str(shared_data))
    row = next(line for line in e3.splitlines() if line.startswith("| tinycnn"))
    aurocs = [float(cell.split("±")[0]) for cell in row.strip("|").split("|")[3:]]
    assert len(aurocs) == 3 and all(0.0 <= a <= 1.0 for a in aurocs)
    assert len(originals) == 2 and [p.stat().st_mtime_ns for p in originals] == stamps  # E3 reused E1's models


@pytest.mark.slow
@pytest.mark.shared_data
def test_e2_then_ablations_small(shared_data, tmp_path):
    e2 = _run("bench_e2_space.py", tmp_path, "--root", str(shared_data))
    for arm in ("| original |", "| ceiling |", "| control |", "| space features.8 β=100 |", "| space features.4 β=100 |",
                "| RRR λ=10 |"):
        assert arm in e2, arm
    from benchmarks.reliance_vs_truth import as_rows, check

    rows = as_rows(json.loads((tmp_path / "bench_e2_space.py.json").read_text()))  # the user's swap accuracy per model
    assert {r["arm"] for r in rows} == {"ceiling", "space features.8 β=100", "space features.4 β=100", "RRR λ=10"}
    assert all(0 <= r["treated"]["swap_acc"] <= 1 and 0 <= r["control"]["swap_acc"] <= 1 for r in rows)
    assert check(rows)[1]["models"] == 2 + len(rows)  # the original and the control once, then each arm
    ab = _run("bench_ablations.py", tmp_path, "--root", str(shared_data))
    assert "Layer depth" in ab and "Annotated images per class" in ab and "30 px at 224 → 6 px at 44" in ab
    assert "| swap acc on validation images |" in ab
    rows = as_rows(json.loads((tmp_path / "bench_ablations.py.json").read_text()))  # E2's records, one row per arm
    assert {r["arm"] for r in rows} >= {"depth: space-wise at features.8", "expand: 30 px at 224 → 6 px at 44"}
    assert all(0 <= r["treated"]["swap_acc"] <= 1 for r in rows) and check(rows)[1]["models"] == 2 + len(rows)
    assert all(len(r["treated"]["per_image"]["swap_acc"]) == len(r["control"]["per_image"]["swap_acc"]) > 0 for r in rows)


def test_collect_performance_copies_tables_and_provenance(tmp_path):
    from benchmarks import collect_performance

    for md, ratio in (("diagnosis.md", "16.2"), ("treatment.md", "1.46"), ("counterfactual_cost.md", "2.01")):
        (tmp_path / md).write_text(f"# x\n\nCommand: `python -m benchmarks.{md}`  \nDate: 2026-01-01\n\n| a | b |\n|---|---|\n"
                                   f"| m | {ratio} |\n\nmore text\n\n### smallcnn\n\nFit: a = 0.1 s, rate = 9 GFLOP/s.\n\n"
                                   "| second table |\n")
    out = tmp_path / "performance.md"
    assert collect_performance.main(["--results", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| m | 16.2 |" in text and "| m | 1.46 |" in text and "| m | 2.01 |" in text
    assert text.count("Date: 2026-01-01") == 3
    assert text.count("smallcnn: Fit: a = 0.1 s, rate = 9 GFLOP/s.") == 3 and "second table" not in text
    (tmp_path / "treatment.md").unlink()
    with pytest.raises(SystemExit, match="treatment.md is missing"):
        collect_performance.main(["--results", str(tmp_path)])


def test_emit_keeps_a_table_whose_numbers_did_not_move(tmp_path):
    from benchmarks._common import emit

    out = tmp_path / "t.md"
    head = ["# t", "", "Command: `python -m benchmarks.t`  "]
    emit([*head, "Machine: a  ", "Date: 2026-01-01", "", "| 1.0 |"], str(out))
    emit([*head, "Machine: b  ", "Date: 2026-02-02", "", "| 1.0 |"], str(out))   # rebuilt from the cache: kept
    assert "Date: 2026-01-01" in out.read_text() and "Machine: a" in out.read_text()
    emit([*head, "Machine: b  ", "Date: 2026-02-02", "", "| 2.0 |"], str(out))   # a number moved: written
    assert out.read_text().endswith("Date: 2026-02-02\n\n| 2.0 |\n") and "Machine: b" in out.read_text()


def _run_digits(script: str, tmp_path, *extra: str) -> str:
    out = tmp_path / f"{script}.md"
    res = subprocess.run([sys.executable, "-m", "benchmarks." + script.removesuffix(".py"), "--budget", "small", "--out", str(out),
                          "--cache", str(tmp_path / "cache"), "--threads", "1", *extra],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    assert "Command: `python -m benchmarks." in text and "Digits: scikit-learn's bundled" in text
    return text


@pytest.mark.slow
def test_e4_shortcut_small(tmp_path):
    text = _run_digits("bench_e4_shortcut.py", tmp_path, "--kinds", "patch")
    for arm in ("| original |", "| ceiling |", "| control |", "| paper β=100 |", "| attribution λ=10 |",
                "| input share λ=10 |", "| counterfactual λ=1 |"):
        assert arm in text, arm
    assert "Chosen by the rule (per seed):" in text and "report swap acc" in text
    # at another KL weight: the default run's models (cached) beside the new arm, a rule choice per weight
    row = lambda t, arm: next(line for line in t.splitlines() if line.startswith(f"| {arm} |"))
    kl0 = _run_digits("bench_e4_shortcut.py", tmp_path, "--kinds", "patch", "--kl-weight", "0")
    for arm in ("original", "control", "counterfactual λ=1"):
        assert row(kl0, arm) == row(text, arm)
    assert "| counterfactual λ=1 kl=0 |" in kl0 and "--kl-weight 0`" in kl0
    assert "Chosen by the rule at the default KL weight 1 (per seed):" in kl0 and "Chosen by the rule at KL weight 0" in kl0


@pytest.mark.slow
def test_e4_scratch_small_measures_reliance_on_the_validation_images(tmp_path):
    text = _run_digits("bench_e4_shortcut.py", tmp_path, "--study", "scratch", "--kinds", "patch")
    assert "| swap acc on the validation images |" in text and "| digits patch | counterfactual λ=1 |" in text
    rows = json.loads((tmp_path / "bench_e4_shortcut.py.json").read_text())
    assert [r["arm"] for r in rows] == ["ceiling (shuffled decoys)", "rrr λ=1000", "paper β=100", "counterfactual λ=1"]
    assert all(r["control"] is None and 0 <= r["treated"]["swap_acc"] <= 1 for r in rows)
    from benchmarks.reliance_vs_truth import check

    _, res = check(rows)
    assert res["models"] == 5 and res["false_claims"] == []  # one original, four arms; no control, no verdict


@pytest.mark.slow
def test_e4_new_decoys_small(tmp_path):
    text = _run_digits("bench_e4_newdecoys.py", tmp_path)
    assert "| texture | box |" in text and "| glyph | box |" in text and "Weight chosen per seed" in text
    assert "| cue | annotation | β=1 | gap closed: rule's choice |" in text  # every weight beside the rule's choice
    rows = json.loads((tmp_path / "bench_e4_newdecoys.py.json").read_text())
    assert {r["kind"] for r in rows} == {"texture", "glyph"} and all("swap_acc" in r["treated"] for r in rows)
    # the benchmark-only measure on every test image: masks and the cue's class written beside them
    assert all(0 <= r[a]["test_pool_swap_acc"] <= 1 for r in rows for a in ("treated", "control"))
    folder = next((tmp_path / "cache").rglob("texture/data-seed0"))
    cues = (folder / "test-cues.csv").read_text().splitlines()
    tests = sorted(p.relative_to(folder / "test").as_posix() for p in (folder / "test").rglob("*.png"))
    assert cues[0] == "file,cue" and sorted(c.split(",")[0] for c in cues[1:]) == tests
    assert sorted(p.relative_to(folder / "masks-test-box").as_posix() for p in (folder / "masks-test-box").rglob("*.png")) == tests
    assert len({c.split(",")[1] for c in cues[1:]}) > 1  # shuffled: the cue is not the class
    assert "| cue | annotation | seed | report images | user's swap acc (treated) | swap acc on the test images |" in text


@pytest.mark.slow
def test_gpu_check_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.md"
    res = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--tiny", "--device", "cpu",
                          "--out", str(out), "--work", str(tmp_path / "w"), "--budget-s", "240"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    for part in ("## 1. The CLI on the device", "| train |", "| diagnose |", "| treat |", "## 2. Whole `diagnose()`",
                 "## 3. Treatment step ÷ plain step", "Resolved device recorded in config.yaml: `cpu`"):
        assert part in text, part
    assert "failed" not in text


@pytest.mark.slow
@pytest.mark.shared_data
def test_e5_inbox_small_then_reliance_check(shared_data, tmp_path):
    text = _run("bench_e5_inbox.py", tmp_path, "--root", str(shared_data), "--kinds", "texture", "--lr", "0.02",
                "--partners", "any", "--erode", "1", "--pool-batch", "8", "--holdout", "0.3", "--space-method", "attribution", "--refine", "none",
                "--ceiling-epochs", "3")
    opts = "--partners any --erode 1 --pool-batch 8 --holdout 0.3 --space-method attribution --refine none"
    assert f"--kinds texture --lr 0.02 --ceiling-epochs 3 {opts}`" in text
    # a ceiling trained longer than the budget's (2 epochs) is its own run, and the table's
    runs = tmp_path / "cache" / "e5-inbox" / "small" / "texture" / "runs"
    assert (runs / "ceiling-ep3" / "summary.json").is_file() and not (runs / "ceiling").exists()
    assert "ceiling: `train --epochs 3 --lr 0.05`" in text and re.search(r"^- texture: \d+ \d+ \d+$", text, re.M)
    assert f"--lr 0.02 --epochs 1 {opts}` (not the" in text
    summaries = sorted((tmp_path / "cache" / "e5-inbox" / "small" / "texture" / "runs").glob("treat-*/summary.json"))
    variant = "lr0.02-partners-any-erode1-pool8-holdout0.3-attribution-refine-none"
    assert [p.parent.name for p in summaries] == [f"treat-box-{variant}-seed0", f"treat-exact-{variant}-seed0"]
    config = __import__("json").loads(summaries[0].read_text())["config"]["treat"]
    assert (config["lr"], config["partners"], config["erode"], config["pool_batch"], config["holdout"],
            config["space_method"], config["refine"]) == (0.02, "any", 1, 8, 0.3, "attribution", "none")
    assert "| texture | box |" in text and "| texture | exact |" in text and "Ceiling curves" in text
    assert "| cue | annotation | β=1 | gap closed: rule's choice |" in text
    rows = __import__("json").loads((tmp_path / "bench_e5_inbox.py.json").read_text())
    assert {r["arm"] for r in rows} == {"box", "exact"} and all("original_reliance" in r and r["images"] > 0 for r in rows)
    # the table's figures are measured again on the run's own report set, split as its --holdout split it
    reports = sorted(__import__("json").loads(p.read_text())["masks"]["report"] for p in summaries)
    assert sorted(r["images"] for r in rows) == reports
    # the truth over equal (class, cue) cells beside treat's plain test accuracy, for each of the three models
    assert all(0 <= r[k][a] <= 1 for r in rows for a in ("original", "control", "treated")
               for k in ("cells_test_acc", "conflicting_test_acc"))
    assert all(len(r[k][a]) == 3 and all(0 <= v <= 1 for v in r[k][a]) for r in rows for a in ("original", "control", "treated")
               for k in ("redraw_test_acc", "redraw_cells_test_acc"))
    # the truth measured again on another draw of the test split: other images, so another plain accuracy
    for name in ("data-seed0-redraw", "data-seed0-redraw2", "data-seed0-redraw3"):
        redraw = tmp_path / "cache" / "e5-inbox" / "small" / "texture" / name
        assert (redraw / "test-cues.csv").is_file() and not (redraw / "train").exists()
    out = tmp_path / "rel.md"
    res = subprocess.run([sys.executable, "-m", "benchmarks.reliance_vs_truth",
                          str(tmp_path / "bench_e5_inbox.py.json"), "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    rel = out.read_text()
    assert "| bench_e5_inbox.py | 6 |" in rel and "| texture | box | 0 | treated |" in rel
    num = r"(-?[01]\.\d\d|nan)"
    one = rf"{num} \({num}–{num}\)"
    line = next(line for line in rel.splitlines() if line.startswith("| bench_e5_inbox.py |"))
    # the truth against itself (expectation; 3 draws, plain / cells), then the colour-matched swap's checks in its place
    assert re.search(rf"\| {num} / {one} / {one} \| {num} / \d+\.\d \|$", line)
    # --cached-only trains nothing: the same options give the same table from the cache, others an empty one
    rows_of = lambda t: [line for line in t.splitlines() if line.startswith("| texture |")]
    again = _run("bench_e5_inbox.py", tmp_path, "--root", str(shared_data), "--kinds", "texture", "--lr", "0.02", *opts.split(),
                 "--ceiling-epochs", "3", "--cached-only")
    # the table names the cache it read, so its Command line regenerates it
    assert f"--cache {tmp_path / 'cache'} --cached-only`" in again and rows_of(again) == rows_of(text)
    other = _run("bench_e5_inbox.py", tmp_path, "--root", str(shared_data), "--kinds", "texture", "--cached-only")
    assert not [line for line in rows_of(other) if "| box |" in line or "| exact |" in line]
    assert not (runs / "ceiling").exists()  # not even the default ceiling
    assert sorted((tmp_path / "cache" / "e5-inbox" / "small" / "texture" / "runs").glob("treat-*/summary.json")) == summaries
    # a benchmark stopped inside a treat run continues it: the fine-tunes that finished load, none trains again
    finished = sorted(summaries[0].parent.rglob("result.json"))
    stamps = [p.stat().st_mtime_ns for p in finished]
    summaries[0].unlink()
    _run("bench_e5_inbox.py", tmp_path, "--root", str(shared_data), "--kinds", "texture", "--lr", "0.02", *opts.split(),
         "--ceiling-epochs", "3")
    assert summaries[0].is_file() and finished and [p.stat().st_mtime_ns for p in finished] == stamps


def test_reliance_vs_truth_flags_what_the_measure_gets_wrong(tmp_path):
    """A measure that reports success where the truth does not is caught by the checks."""
    from benchmarks import reliance_vs_truth as R

    def row(seed, swap_t, acc_t, arm="box"):
        return {"kind": "k", "arm": arm, "seed": seed, "original": 0.1, "original_reliance": {"swap_acc": 0.05},
                "control": {"swap_acc": 0.05, "test_acc": 0.1}, "treated": {"swap_acc": swap_t, "test_acc": acc_t}}

    fooled = [row(s, 0.97 + 0.001 * s, 0.1 + d) for s, d in enumerate((0.01, -0.01, 0.005))]  # claim, no truth
    _, res = R.check(fooled)
    assert res["false_claims"] == ["k / box"] and res["worst_treated_gap"] > 0.8
    # where rows carry the cue-conflicting test accuracy, the claim says whether that one is better beyond noise
    conf = [{**r, "conflicting_test_acc": {"original": 0.0, "control": 0.0, "treated": 0.2 + 0.01 * i}} for i, r in enumerate(fooled)]
    assert R.check(conf)[1]["false_claims"] == ["k / box (cue-conflicting test acc better beyond noise)"]
    # one set of images for every seed (E2, the ablations): their noise joins the seed spread, as in `treat`'s verdict
    same = [{**row(s, 0.5 + 0.002 * s, 0.1), "same_images": True} for s in range(3)]  # +45 pts, std 0.2: beyond seeds
    assert R.check(same)[1]["false_claims"] == ["k / box"]        # no per-image values: the seed rule alone
    for r in same:   # 4 images; the treated model is right on 2 of them, the control on none: s.e. 0.29 per term
        r["treated"]["per_image"] = {"swap_acc": [1.0, 1.0, 0.0, 0.0], "swap_acc_by_background": [1.0, 1.0, 0.0, 0.0]}
        r["control"]["per_image"] = {"swap_acc": [0.0] * 4, "swap_acc_by_background": [0.0] * 4}
    assert R.swap_image_se(same) == pytest.approx(math.sqrt(2 * (1 / 3) / 4))
    assert R.check(same)[1]["false_claims"] == []                  # 0.45 < 2 × 0.41: within the images' noise
    honest = [row(s, 0.5 + 0.01 * s, 0.52 + 0.01 * s) for s in range(3)]
    _, res = R.check(honest + [row(0, 0.99, 0.1, arm="box-norefine")])   # norefine rows are shown, not checked
    assert res["false_claims"] == [] and res["worst_treated_gap"] < 0.05 and res["models"] == 9
    assert res["spearman"] > 0.8 and res["spearman_test"] is None  # no row carries the measure on the test images
    # the measure on the test images beside every model: its own rank check, apart from the report set's
    pooled = [row(s, 0.5, 0.52 + 0.01 * s) for s in range(3)]
    for r, t in zip(pooled, (0.3, 0.5, 0.4)):
        r["original_reliance"]["test_pool_swap_acc"], r["control"]["test_pool_swap_acc"] = 0.0, 0.0
        r["treated"]["test_pool_swap_acc"] = t
    res = R.check(pooled)[1]
    assert res["spearman_test"] == pytest.approx(R.spearman([0.0] * 6 + [0.3, 0.5, 0.4], [0.1] * 6 + [0.52, 0.53, 0.54]))
    assert res["spearman_test"] != pytest.approx(res["spearman"])
    assert res["inside"] == "—"  # no row says how many images its figure rests on
    assert res["cells"] == "—"   # no row carries the truth over equal (class, cue) cells
    # the truth over equal cells: the three floor models of each seed tie at 1/K there, as their swap figures do
    for r, floor in zip(pooled, (0.101, 0.073, 0.108)):
        r["original"] = r["control"]["test_acc"] = floor
        r["cells_test_acc"] = {"original": 0.1, "control": 0.1, "treated": r["treated"]["test_acc"] - floor + 0.1}
        r["original_reliance"]["swap_acc"] = r["control"]["swap_acc"] = 0.0
    res = R.check(pooled)[1]
    rho = R.spearman([0.0] * 6 + [0.5] * 3, [0.1] * 6 + [0.519, 0.557, 0.532])
    # the plain truth against its expectation (the floors at 1/K): the floors' draw alone costs a perfect measure that much
    rho_expected = R.spearman([0.1] * 6 + [0.519, 0.557, 0.532], [0.101, 0.101, 0.073, 0.073, 0.108, 0.108, 0.52, 0.53, 0.54])
    assert rho_expected < 1
    assert res["cells"] == f"{rho:.2f} / 5.7 / never" and res["spearman"] < rho  # the draw's floor ranks no longer count
    assert res["retest"] == {"plain": None, "cells": None, "expected": pytest.approx(rho_expected)}  # no re-drawn split
    # the truth against itself on a re-drawn test split: the floor models' own-cue shares drawn again
    for r, floor in zip(pooled, ((0.094, 0.1), (0.111, 0.075), (0.089, 0.11))):   # two draws
        r["redraw_test_acc"] = {"original": list(floor), "control": list(floor), "treated": [r["treated"]["test_acc"] + 0.01] * 2}
        r["redraw_cells_test_acc"] = {a: [v] * 2 for a, v in r["cells_test_acc"].items()}
    res = R.check(pooled)[1]
    truth = [0.101, 0.101, 0.52, 0.073, 0.073, 0.53, 0.108, 0.108, 0.54]   # per seed: original, control, treated
    first = R.spearman(truth, [0.094, 0.094, 0.53, 0.111, 0.111, 0.54, 0.089, 0.089, 0.55])
    assert res["retest"]["plain"] == pytest.approx([first, R.spearman(truth, [0.1, 0.1, 0.53, 0.075, 0.075, 0.54, 0.11, 0.11, 0.55])])
    assert res["retest"]["plain"][1] == pytest.approx(1.0) and first < 0.8   # the floor order drawn again: kept once, not once
    assert res["retest"]["cells"] == pytest.approx([1.0, 1.0])
    assert R._retest(res["retest"]) == f"{rho_expected:.2f} / {(first + 1) / 2:.2f} ({first:.2f}–1.00) / 1.00 (1.00–1.00)"
    # 4 report images: 100 % allows 51-100 %, so a truth of 60 % is inside and one of 40 % is not
    _, res = R.check([{**row(0, 1.0, 0.6), "images": 4}, {**row(1, 1.0, 0.4), "images": 4}, row(2, 0.5, 0.5)])
    assert res["inside"] == "1 of 2"
    assert res["backwards"] == "—"  # no row carries the sign test

    def waterbird(seed, p, conflicting, agreeing):  # a treated model's sign test beside its two test-group accuracies
        r = row(seed, 0.9, conflicting)
        r["treated"] |= {"backwards_p": p, "agreeing_test_acc": agreeing}
        return r

    # reads backwards on test and warned; reads backwards, not warned; warned but reads forwards (a false alarm)
    within = waterbird(3, 0.001, 0.55, 0.53)   # 2 points apart, inside its 2-SE margin: not backwards on test
    within["treated"]["backwards_margin"] = 0.06
    _, res = R.check([waterbird(0, 0.001, 0.7, 0.35), waterbird(1, 0.2, 0.6, 0.4), waterbird(2, 0.01, 0.3, 0.8), within])
    assert res["backwards"] == "1 of 2 warned; 2 false"
    # seeds written by separate runs: alone one seed cannot be beyond noise; joined with "+", the false claim shows
    for i, rs in enumerate((fooled[:1], fooled[1:])):
        (tmp_path / f"s{i}.json").write_text(json.dumps(rs))
    out = tmp_path / "rel.md"
    assert R.main([str(tmp_path / "s0.json"), f"{tmp_path / 's0.json'}+{tmp_path / 's1.json'}", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| s0 | 3 | " in text and "| never |" in text and "| s0 + s1 | 9 | " in text and "| k / box |" in text
    from benchmarks.bench_waterbirds import CONFLICTING, _test_side

    names = ["top-outdoor", "top-indoor-sky", "footwear-outdoor", "footwear-indoor-sky"]
    acc = dict(zip(names, (0.3, 0.7, 0.6, 0.4)))
    side = _test_side({"per_group": acc, "sizes": dict.fromkeys(names, 250)})
    conf = [n for n in names if n in CONFLICTING]
    assert len(conf) == 2 and side["agreeing_test_acc"] == pytest.approx(sum(acc[n] for n in names if n not in conf) / 2)
    naive = 2 * math.sqrt(sum(acc[n] * (1 - acc[n]) / 250 for n in names) / 4)  # each side the mean of two groups
    assert 2 * side["backwards_se"] == pytest.approx(naive)


@pytest.mark.slow
def test_counterfactual_cost_small(tmp_path):
    out = tmp_path / "cf.md"
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_counterfactual", "--budget", "small",
                          "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    assert "| counterfactual step ÷ plain step |" in text and "÷ its three fine-tunes" in text
    assert "| whole default `treat` (one round) ÷ its three fine-tunes run plainly |" in text
    rows = text.split("| what |")[1].split("\n")
    assert rows[3].startswith("| the same step with `--object-colour cue`") and "—" not in rows[3].split("|")[2]
    assert "—" not in rows[4] and "—" not in rows[5].split("|")[2]
    assert rows[6].startswith("| whole `treat` that escalates") and "escalated in 1 of 1 rounds" in rows[6], rows[6]
    assert "no round escalated" not in rows[6] and "—" not in rows[6].split("|")[2]


@pytest.mark.parametrize("extra, said", [(["--study", "rule", "--annotated", "0"], "--annotated 0: pass a positive number"),
                                         (["--annotated", "40"], "--annotated 40: pass a positive number"),
                                         (["--partners", "any"], "--partners any: only --study rule"),
                                         (["--kl-weight", "0"], "--kl-weight 0: pass a weight >= 0, with --study rule"),
                                         (["--study", "rule", "--kl-weight", "-1"], "--kl-weight -1: pass a weight >= 0")])
def test_waterbirds_rule_options_are_checked_before_any_work(extra, said, tmp_path):
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_waterbirds", "--budget", "small", *extra,
                          "--cache", str(tmp_path / "cache")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 2 and said in res.stderr
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_pretrained_regime_small(tmp_path):
    """E7 pretrains a backbone on the shortcut-free set, runs every method's candidates from it,
    chooses each with every group-label budget (and none, where the method can), prints chance and
    BG-Gap beside every row; a second run trains nothing."""
    out = tmp_path / "e7.md"
    cmd = [sys.executable, "-m", "benchmarks.bench_pretrained", "--budget", "small", "--out", str(out),
           "--cache", str(tmp_path / "cache"), "--root", str(tmp_path / "none")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    for row in ("| ERM | none: average accuracy | 0 | 0 | 4 |", "| JTT | 20 per group | 80 | 0 | 4 |",
                "| GroupDRO | 5 per group | 260 | 0 | 4 |", "| GroupDRO | none | | 0 | 4 | n/a: needs group labels",
                "| DFR(Val) on ERM's features | 5 per group | 20 | 0 | 7 |",
                "| counterfactual from ERM, half the boxes held out (for its no-label rule) | none: treat's own rule on held-out boxes | 0 | 8 (",
                "| counterfactual from ERM as `treat --groups` splits the boxes | none | | 8 (",
                "| random guessing (expected) |"):
        assert row in text, row
    assert "no group labels, worst-group accuracy, counterfactual − jtt:" in text
    classes = {p.name for p in (next((tmp_path / "cache").glob("e7-pretrained/*/pretraining")) / "train").iterdir()}
    assert len([c for c in classes if c.startswith("object-")]) == 10 and len([c for c in classes if c.startswith("place-")]) == 12
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("e7-pretrained/*/**/result.json")}
    assert len(stamps) == 1 + 4 * 6 + 2   # the backbone, four candidates of six arms, JTT's two first stages
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    cli = [sys.executable, "-m", "benchmarks.e7_cli", "--budget", "small", "--out", str(tmp_path / "cli.md"),
           "--cache", str(tmp_path / "cache")]
    res = subprocess.run(cli, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    said = (tmp_path / "cli.md").read_text()
    assert "Command per seed: `model-doctor treat --data imagefolder:<cache>/data-seed0" in said and "| 0 | " in said
    assert next((tmp_path / "cache").glob("e7-pretrained/*/seed0/cli-treat/summary.json")).is_file()


@pytest.mark.slow
def test_waterbirds_small(tmp_path):
    out = tmp_path / "e6.md"
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_waterbirds", "--budget", "small", "--out", str(out),
                          "--cache", str(tmp_path / "cache"), "--root", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    for arm in ("erm", "jtt", "dfr", "groupdro", "counterfactual"):
        assert f"| {arm} | " in text
    assert "scikit-learn digits" in text and "Command: `python -m benchmarks.bench_waterbirds" in text
    assert "| ceiling |" in text and "counterfactual − dfr:" in text
    runs = tmp_path / "cache" / "e6-waterbirds"
    stamp = next(runs.glob("*/seed0/erm/result.json")).stat().st_mtime_ns
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_waterbirds", "--budget", "small", "--study", "annotations",
                          "--out", str(out), "--cache", str(tmp_path / "cache"), "--root", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    for row in ("| boxes | 2 |", "| boxes | 8 |", "| boxes | 16 |", "| exact masks | 8 |"):
        assert row in text, row
    assert next(runs.glob("*/seed0/erm/result.json")).stat().st_mtime_ns == stamp  # the same control, not retrained
    assert any(runs.glob("*/data-seed0-annotated16/masks-box/*/*.png"))
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_waterbirds", "--budget", "small", "--study", "rule",
                          "--out", str(out), "--cache", str(tmp_path / "cache"), "--root", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    assert "| **counterfactual, `swap` rule** (no group labels) |" in text
    assert "| **counterfactual, `balanced` rule** (no group labels) |" in text
    assert next(runs.glob("*/seed0/erm/result.json")).stat().st_mtime_ns == stamp  # the control is the main study's
    rows = json.loads(out.with_suffix(".json").read_text())  # reliance_vs_truth's rows, one per rule
    assert {r["arm"].split("-")[1] for r in rows} == {"swap rule", "balanced rule"}
    assert all({"swap_acc", "same_swap_acc", "test_acc"} <= set(r["treated"]) for r in rows)
    assert "`treat`'s backwards warning |" in text and all("backwards_p" in r["treated"] for r in rows)
    assert all(0 <= r[a]["test_pool_swap_acc"] <= 1 for r in rows for a in ("treated", "control"))  # every test image
    assert "(benchmark only) |" in text
    # without the main study (a seed it never ran): original and ERM only beside the rules; one weight;
    # twice the budget's annotations, so twice the report images
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_waterbirds", "--budget", "small", "--study", "rule",
                          "--rules", "swap", "--betas", "1", "--seeds", "1", "--annotated", "16", "--partners", "any",
                          "--out", str(out), "--cache",
                          str(tmp_path / "cache"), "--root", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    assert "--study rule --betas 1 --rules swap --annotated 16 --partners any --seeds 1`" in text and "| erm |" in text
    assert any(runs.glob("*/seed1/rule-*/counterfactual-any-beta1/result.json"))  # the any-partner arms, named apart
    assert any(runs.glob("*/seed1/rule-*/test-rule-any.json"))
    assert "| jtt |" not in text and "Chosen on 8 held-out annotated images, reported on 8." in text
    assert any(runs.glob("*/data-seed1-annotated16/masks-box/*/*.png"))
    assert "counterfactual β from 1;" in text and not any(runs.glob("*/seed1/jtt"))


@pytest.mark.parametrize("kind", ["texture", "colour", "pattern", "dots", "photo", "gradient", "mark", "watermark", "halo", "cast",
                                  "grain", "plaid", "shadow", "tone", "veil", "focus"])
def test_inbox_decoy_cue_shows_inside_the_box_not_through_the_object(kind):
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from benchmarks import inbox_decoys as D

    obj = np.zeros((28, 28), np.uint8)
    obj[4:24, 4:9], obj[19:24, 4:24] = 200, 200  # an L: its box holds plenty of background
    shown = on_object = 0
    for draw in range(5):   # a cue local to the object (mark) may hide behind it on one draw
        imgs = {c: D.render(kind, obj, c, np.random.default_rng(draw))[:2] for c in (0, 3)}
        (a, exact), (b, _) = imgs[0], imgs[3]
        assert a.shape == ((D.CANVAS, D.CANVAS, 3) if D.channels(kind) == 3 else (D.CANVAS, D.CANVAS))
        ys, xs = np.nonzero(exact)
        box = np.zeros_like(exact)
        box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        inside = box & ~exact                        # the box's background: the two classes' cues differ there
        diff = np.abs(a.astype(float) - b).reshape(D.CANVAS, D.CANVAS, -1).max(-1)
        assert inside.sum() > 50
        shown += int((diff[inside] > 40).sum())
        core = exact & np.roll(exact, 1, 0) & np.roll(exact, -1, 0) & np.roll(exact, 1, 1) & np.roll(exact, -1, 1)
        assert core.sum() > 50
        on_object += int((diff[core] > 10).sum())   # the object's pixels (its soft edge aside)
        assert kind in D.ON_OBJECT or np.array_equal(a[core], b[core])
    assert shown >= 20
    assert (on_object > 0) == (kind in D.ON_OBJECT)   # no cue there, but for a watermark drawn over everything


def test_frame_cue_lies_on_the_border_and_never_on_the_object():
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from benchmarks import inbox_decoys as D

    obj = np.zeros((28, 28), np.uint8)
    obj[4:24, 4:24] = 200
    (a, exact, _), (b, _, _) = (D.render("frame", obj, c, np.random.default_rng(0)) for c in (0, 3))
    border = np.ones((D.CANVAS, D.CANVAS), bool)
    border[D.FRAME:-D.FRAME, D.FRAME:-D.FRAME] = False
    diff = np.abs(a.astype(float) - b).max(-1)
    assert (diff[border & ~exact] > 40).mean() > 0.9          # the two classes' borders differ
    assert np.array_equal(a[exact], b[exact])                # the object's pixels carry no cue


def test_equal_cells_gives_a_cue_reader_one_over_k_whatever_the_draw():
    """Naive reference: the mean over (class, cue) cells of each cell's hit rate."""
    import torch

    from benchmarks.bench_e5_inbox import equal_cells

    g = torch.Generator().manual_seed(0)
    labels, cues = torch.randint(0, 4, (400,), generator=g), torch.randint(0, 4, (400,), generator=g)
    cue_reader = cues == labels                      # predicts the cue's class: right only where the cue is its own
    assert equal_cells(cue_reader, labels, cues) == pytest.approx(0.25)
    assert float(cue_reader.double().mean()) != pytest.approx(0.25, abs=1e-3)   # the plain accuracy follows the draw
    hits = torch.rand(400, generator=g) < 0.6
    ref = [[h for h, y, c in zip(hits.tolist(), labels.tolist(), cues.tolist()) if (y, c) == (a, b)] for a in range(4) for b in range(4)]
    assert equal_cells(hits, labels, cues) == pytest.approx(sum(sum(r) / len(r) for r in ref if r) / sum(1 for r in ref if r))
    off = [r for i, r in enumerate(ref) if r and i // 4 != i % 4]   # the cells whose cue codes another class
    assert equal_cells(hits, labels, cues, conflicting=True) == pytest.approx(sum(sum(r) / len(r) for r in off) / len(off))
    assert equal_cells(cue_reader, labels, cues, conflicting=True) == 0.0


def test_e5_options_judges_each_cell_against_the_bar(tmp_path):
    """The options table reads the setting from the table's command and says which part of the bar fails."""
    from benchmarks import e5_options as O

    def write(name, command, rows):
        (tmp_path / f"{name}.md").write_text(f"# t\n\nCommand: `{command}`  \nDate: 2026-12-03\n")
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
        return tmp_path / f"{name}.json"

    def row(seed, treated, control=0.1, arm="box", floor=True):
        return {"kind": "k", "arm": arm, "seed": seed, "original": 0.1, "ceiling": 0.7,
                "treated": {"test_acc": treated}, "control": {"test_acc": control}, **({"val_floor": 0.5} if floor else {})}

    good = write("good", "python -m benchmarks.bench_e5_inbox --budget full --kinds k --arms box --seeds 3 4 5",
                 [row(3, 0.46), row(4, 0.50), row(5, 0.48)])  # 60 % of the gap, +38 ± 2
    weak = write("weak", "python -m benchmarks.bench_e5_inbox --budget full --kinds k --lr 0.15 --ceiling-epochs 100",
                 [row(3, 0.25, floor=False), row(4, 0.30, floor=False), row(5, 0.20, floor=False)])  # 25 %
    noisy = write("noisy", "python -m benchmarks.bench_e5_inbox --budget full --kinds k --epochs 30 --kl-weight 0",
                  [row(3, 0.9, control=0.1), row(4, 0.5, control=0.45), row(5, 0.6, control=0.1)])  # big, not > 2σ
    one = write("one", "python -m benchmarks.bench_e5_inbox --budget full --kinds k --seeds 9", [row(9, 0.6)])
    esc = write("esc", "python -m benchmarks.bench_e5_inbox --budget full --kinds k --seeds 12 13 14",
                [{**row(12, 0.5), "escalated": True}, {**row(13, 0.5), "escalated": False}, {**row(14, 0.5), "escalated": True}])
    calm = write("calm", "python -m benchmarks.bench_e5_inbox --budget full --kinds k --seeds 15",
                 [{**row(15, 0.5), "escalated": False}])
    text = "\n".join(O.lines_for([good, weak, noisy, one, esc, calm]))
    assert "| defaults, escalated on 2 of 3 seeds | 12 13 14 |" in text and "| defaults, not escalated | 15 |" in text
    assert "| defaults | 3 4 5 | 10.0 → 48.0 (70.0) | 63 % (60 / 67 / 63) | +38.0 ± 2.0 | **passes** |" in text
    assert "| `--lr 0.15`, before the floor | 3 4 5 |" in text and "| 25 % (25 / 33 / 17) |" in text
    assert text.count("fails: gap < ½ |") == 1
    assert "`--epochs 30 --kl-weight 0` | 3 4 5 |" in text and "| fails: not beyond 2σ |" in text
    assert "| fails: not beyond 2σ, 1 seed |" in text
    assert "- k / box: good (defaults): passes; weak (--lr 0.15, before the floor): fails: gap < ½;" in text
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    (tmp_path / "bad.md").write_text("Command: `python -m benchmarks.bench_waterbirds --budget full`\n")
    with pytest.raises(SystemExit, match="not a bench_e5_inbox run"):
        O.read_table(bad)


def test_reliance_pooled_counts_a_model_shared_by_tables_once():
    from benchmarks.reliance_vs_truth import pooled

    def row(seed, t, s, arm="box"):
        return {"kind": "k", "arm": arm, "seed": seed, "original": 0.1, "original_reliance": {"swap_acc": 0.0},
                "control": {"swap_acc": 0.01, "test_acc": 0.1}, "treated": {"swap_acc": s, "test_acc": t}}

    a = [row(0, 0.5, 0.45), row(1, 0.3, 0.2)]
    b = [row(0, 0.6, 0.55), row(1, 0.3, 0.2), row(1, 0.4, 0.1, arm="box-norefine")]  # one treated shared, a variant
    res = pooled(a + b)
    assert res["k"][0] == 2 + 2 + 3 and res["all"] == res["k"]   # originals 2, controls 2, treated 3 distinct
    assert res["k"][1] > 0.8


def test_a_run_told_colour_is_a_cue_is_checked_on_the_colour_matched_figure_it_heads_with():
    from benchmarks.reliance_vs_truth import as_read, check, pooled

    def row(seed, plain, matched, t, headline=None):
        rel = lambda p, m: {"swap_acc": p, "matched_swap_acc": m, "per_image": {"swap_acc": [p], "matched_swap_acc": [m]}}
        return {"kind": "k", "arm": "box", "seed": seed, "original": 0.1, "original_reliance": rel(0.99, 0.0),
                "control": {**rel(0.98, 0.01), "test_acc": 0.1}, "treated": {**rel(0.99, t - 0.05), "test_acc": t},
                **({"headline": headline} if headline else {})}

    plain = [row(s, 0.99, 0.0, 0.3 + 0.1 * s) for s in range(3)]
    told = [row(s, 0.99, 0.0, 0.3 + 0.1 * s, headline="matched_swap_acc") for s in range(3)]
    assert as_read(plain[0]) is plain[0]
    read = as_read(told[0])
    assert read["treated"]["swap_acc"] == pytest.approx(0.25) and read["original_reliance"]["swap_acc"] == 0.0
    assert read["treated"]["per_image"]["swap_acc"] == [pytest.approx(0.25)] and told[0]["treated"]["swap_acc"] == 0.99
    assert check(plain)[1]["worst_treated_gap"] == pytest.approx(0.69)
    assert check(told)[1]["worst_treated_gap"] == pytest.approx(0.05)
    # pooled: a told table's originals are its default table's models, counted there once
    assert pooled(plain + told)["k"][0] == 3 + 3 + 3 + 3 + 3


def test_two_truths_puts_each_words_figure_beside_the_truth_it_names(tmp_path):
    from benchmarks.reliance_vs_truth import two_truths

    path = tmp_path / "oc.json"
    path.write_text(json.dumps([{"seed": 15, "truth": 0.95, "tint_shuffled": 0.11, "swap_acc": 0.99,
                                 "matched_swap_acc": 0.01}]))
    (line,) = [x for x in two_truths([str(path)]) if x.startswith("| oc |")]
    assert line == "| oc | 15 | 95.0 | 11.0 | 99.0 | 1.0 | — | 84.0 | 4.0 | 10.0 |"  # written before the silhouette
    assert len(two_truths([])) == 7 and two_truths([])[-1] == "|---|---|---|---|---|---|---|---|---|---|"  # header only
    # each word's lowest figure: `own` the plain and silhouette swaps, `cue` all four (the transferred one lowest here)
    path.write_text(json.dumps([{"seed": 16, "truth": 0.95, "tint_shuffled": 0.11, "swap_acc": 0.99,
                                 "matched_swap_acc": 0.2, "transfer_swap_acc": 0.05, "silhouette_swap_acc": 0.5}]))
    (line,) = [x for x in two_truths([str(path)]) if x.startswith("| oc |")]
    assert line == "| oc | 16 | 95.0 | 11.0 | 99.0 | 20.0 | 50.0 | 84.0 | 45.0 | 6.0 |"


def test_pass_through_names_runs_apart_and_keeps_the_default_runs_names():
    """E5 and E4b pass treat options through; a value off the default trains its own cached runs."""
    import argparse

    from benchmarks import bench_e5_inbox as E5

    ap = argparse.ArgumentParser()
    E5.add_pass_through(ap)
    assert E5.pass_through(ap.parse_args([])) == ([], "")
    extra, variant = E5.pass_through(ap.parse_args(["--kl-weight", "0", "--refine", "none"]))
    assert extra == ["--refine", "none", "--kl-weight", "0"] and variant == "-refine-none-kl0"
    assert E5.pass_through(ap.parse_args(["--object-colour", "cue"])) == (["--object-colour", "cue"], "-colour-cue")


def test_e4_kl_weight_renames_the_counterfactual_arms_and_builds_their_term_with_it():
    """E4 at another KL weight: its counterfactual arms train apart (their own cache names) with that
    weight, while the original, ceiling, control and attribution stay the default run's, for a paired table."""
    import torch

    from benchmarks import bench_e4_shortcut as E4
    from model_doctor.treatment.pool import AnnotatedPool

    full = E4.BUDGETS["full"]
    assert E4.with_kl(full, 1.0) is full
    b = E4.with_kl(full, 0.0)
    assert b["arms"][:3] == full["arms"] and [a[0] for a in b["arms"][3:]] == ["counterfactual λ=0.3 kl=0",
                                                                             "counterfactual λ=1 kl=0"]
    assert list(b["rule_sets"].values()) == [[a[0] for a in full["arms"]],
                                             ["attribution λ=10", "counterfactual λ=0.3 kl=0", "counterfactual λ=1 kl=0"]]
    assert b["extra_per_class"] == b["seed0_arms"] == [] and b["per_class"] == [20]
    pool = AnnotatedPool(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), torch.ones(4, 8, 8, dtype=torch.bool))
    for option, kl in ((None, 1.0), (0.0, 0.0), (0.5, 0.5)):
        term = E4.make_terms("counterfactual", 1.0, option, pool, None, 0)()
        assert term.kl_weight == kl
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_e4_shortcut", "--kl-weight", "-1"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2 and "--kl-weight -1.0: use a number >= 0" in res.stderr


def test_escalation_share_table_counts_the_seeds_under_the_share():
    from benchmarks.escalation_share import RUN, table

    v = lambda share, esc=None, report=None: {"swap": share, "clean": 1.0, "share": share, "escalated": esc, "report": report}
    cells = {("e5-inbox", "photo", "box", "defaults"): {12: v(0.1, True), 13: v(0.08, True), 3: v(0.17, report=0.22)},
             ("e5-inbox", "colour", "exact", "kl0"): {4: v(0.41, report=0.45), 3: v(0.56, report=0.38)}}
    text = "\n".join(table(cells, 0.3))
    assert "| e5-inbox | photo | box | defaults | 3: 0.17 12: 0.10 13: 0.08 | 3 of 3 | 2 of 2 | -5 |" in text
    assert "| e5-inbox | colour | exact | kl0 | 3: 0.56 4: 0.41 | 0 of 2 | — (ran before) | +18 -4 |" in text
    assert "over 3 first rounds it differs" in text and "median of -4 points (-5 to +18)" in text
    assert text.index("colour") < text.index("photo")                        # sorted by cue
    m = RUN.match("treat-box-ep30-kl0-seed11")
    assert m is not None and (m.group(1), m.group(2), m.group(3)) == ("box", "-ep30-kl0", "11")
    assert RUN.match("treat-exact-seed3").group(2) is None and RUN.match("orig-seed3") is None



def test_object_colour_tints_the_object_only_and_runs_small(shared_data, tmp_path):
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from benchmarks import object_colour as O

    obj = np.zeros((28, 28), np.uint8)
    obj[4:24, 4:9], obj[19:24, 4:24] = 200, 200
    (a, ma), (b, mb) = (O.render(obj, tint, 5, np.random.default_rng(0)) for tint in (0, 3))
    exact = ma["masks-exact"] > 0
    diff = np.abs(a.astype(float) - b).max(-1)
    assert (diff[~exact] == 0).all() and (diff[exact] > 40).mean() > 0.9   # the colour is the object's, all of it
    assert (ma["masks-box"] == mb["masks-box"]).all()
    out = tmp_path / "oc.md"
    res = subprocess.run([sys.executable, "-m", "benchmarks.object_colour", "--budget", "small", "--out", str(out),
                          "--cache", str(tmp_path / "cache"), "--root", str(shared_data)],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.with_suffix(".json").read_text())
    assert len(rows) == 1 and rows[0]["images"] > 0 and 0 <= rows[0]["matched_swap_acc"] <= 1
    assert 0 <= rows[0]["silhouette_swap_acc"] <= 1 and 0 <= rows[0]["transfer_swap_acc"] <= 1   # every figure kept
    assert "| 0 | " in out.read_text() and any((tmp_path / "cache").glob("object-colour/small/data-seed0/test-tint-shuffled/*/*.png"))


def test_reliance_vs_truth_calibration_counts_every_claim_against_the_truth():
    """The calibration column: each "beyond noise" the library's verdict gives, backed (the truth beyond
    noise the same way, within 25 points) or listed with both figures."""
    from benchmarks import reliance_vs_truth as R

    def row(seed, swap_t, acc_t, matched_t=None):
        treated = {"swap_acc": swap_t, "test_acc": acc_t} | ({"matched_swap_acc": matched_t} if matched_t is not None else {})
        control = {"swap_acc": 0.05, "test_acc": 0.1} | ({"matched_swap_acc": 0.05} if matched_t is not None else {})
        return {"kind": "k", "arm": "box", "seed": seed, "original": 0.1, "original_reliance": {"swap_acc": 0.05},
                "control": control, "treated": treated}

    over = [row(s, 0.9 + 0.01 * s, 0.2 + 0.01 * s) for s in range(3)]          # +86 claimed, +11 true
    c = R.check(over)[1]["calibration"]
    assert c["claims"] == 1 and c["backed"] == 0 and "claims +86.0, truth +11.0" in c["off"][0]
    backed = [row(s, 0.6 + 0.01 * s, 0.55 + 0.01 * s) for s in range(3)]       # +56 claimed, +46 true
    c = R.check(backed)[1]["calibration"]
    assert c == {"claims": 1, "backed": 1, "worst": pytest.approx(0.10), "off": [], "figures": {"swap_acc"},
                 "written": {"swap_acc"}}
    nan = float("nan")   # a grey table of today: the transferred swap written as NaN still counts as known
    grey = [r | {a: r[a] | {"matched_swap_acc": 0.5, "transfer_swap_acc": nan, "silhouette_swap_acc": 0.5}
                 for a in ("treated", "control")} for r in backed]
    assert R.check(grey)[1]["calibration"]["written"] == {"swap_acc", "matched_swap_acc", "transfer_swap_acc",
                                                          "silhouette_swap_acc"}
    assert R._figure_names(c["figures"] | {"silhouette_swap_acc"}) == "plain, silhouette"
    dropped = R._without(backed[0] | {"treated": backed[0]["treated"] | {"silhouette_swap_acc": 0.0}}, ["silhouette_swap_acc"])
    assert dropped["treated"] == backed[0]["treated"]   # --drop: judged as if the figure did not exist
    split = [row(s, 0.9 + 0.01 * s, 0.2, matched_t=0.4 + 0.02 * s) for s in range(3)]  # the figures disagree: no claim
    assert R.check(split)[1]["calibration"]["claims"] == 0


def test_calibration_totals_split_tables_by_the_figures_they_carried():
    """A table written before a figure existed is counted apart from those the verdict of today judges in full."""
    from benchmarks.reliance_vs_truth import calibration_totals
    from model_doctor.treatment.verdicts import FIGURES

    full = {"claims": 2, "backed": 2, "off": [], "figures": set(FIGURES) - {"transfer_swap_acc"}, "written": set(FIGURES)}
    old = {"claims": 3, "backed": 2, "off": ["grain / box (claims +72.8, truth +20.8)"], "figures": {"swap_acc"}}
    today, before = calibration_totals([("a", full), ("b", old), ("c", dict(full, claims=1, backed=1))])
    assert today == "- Tables with every figure the verdict reads today: 2; 3 of 3 claims backed."
    assert before.startswith("- Tables written before a figure existed") and ": 1; 2 of 3 claims backed" in before
    assert before.endswith("not backed: b: grain / box (claims +72.8, truth +20.8).")


def test_an_unbacked_older_table_names_the_rerun_of_its_command_with_every_figure(tmp_path):
    """A superseded record stays in the count, and its line says what the same command said with every figure."""
    from benchmarks.reliance_vs_truth import calibration_totals, recorded_command
    from model_doctor.treatment.verdicts import FIGURES

    cmd = "python -m benchmarks.bench_e5_inbox --budget full --kinds grain --seeds 15 16 17"
    (tmp_path / "old.md").write_text(f"# E5\n\nCommand: `{cmd} --out docs/x.md`  \n")
    (tmp_path / "new.md").write_text(f"# E5\n\nCommand: `{cmd} --threads 2`  \n")
    (tmp_path / "other.md").write_text(f"# E5\n\nCommand: `{cmd.replace('grain', 'halo')}`  \n")
    (tmp_path / "kept.md").write_text(f"# E5\n\nCommand: `{cmd} --cache runs/x --cached-only`  \n")  # a cache's models, measured
    assert recorded_command(str(tmp_path / "old.json")) == recorded_command(str(tmp_path / "new.json")) == cmd
    assert recorded_command(str(tmp_path / "kept.json")) == cmd
    assert recorded_command(str(tmp_path / "missing.json")) is None
    old = {"claims": 1, "backed": 0, "off": ["grain / box (claims +72.8, truth +20.8)"], "figures": {"swap_acc"},
           "command": cmd}
    new = {"claims": 0, "backed": 0, "off": [], "figures": set(), "written": set(FIGURES), "command": cmd}
    other = dict(new, claims=1, backed=1, command=recorded_command(str(tmp_path / "other.json")))
    _, before = calibration_totals([("old", old), ("new", new), ("other", other)])
    assert before.endswith("not backed: old: grain / box (claims +72.8, truth +20.8) "
                           "(the same command with every figure: new, no claim).")
    kept = dict(new, claims=2, backed=1, command=recorded_command(str(tmp_path / "kept.json")))
    _, before = calibration_totals([("old", old), ("new", new), ("kept", kept)])
    assert before.endswith("(the same command with every figure: new, no claim; kept, 1 of 2 claims backed).")
