"""The Waterbirds-style benchmark: written as an ImageFolder with masks and groups, and `treat
--groups` reports worst-group accuracy beside the average, with a verdict on the worst group."""

import csv
import json
from collections import Counter

import pytest

from model_doctor.cli import main


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("wb") / "wb"
    assert main(["waterbirds", "--out", str(out), "--size", "32", "--n-train", "240", "--n-val", "40", "--n-test", "80",
                 "--per-class", "8", "--correlation", "0.9"]) == 0
    return out


def test_layout_correlation_and_balance(bench):
    rows = list(csv.DictReader((bench / "groups.csv").open()))
    by_split = {s: Counter(r["group"] for r in rows if r["file"].startswith(s + "/")) for s in ("train", "val", "test")}
    assert set(by_split["test"].values()) == {20} and len(by_split["test"]) == 4  # group-balanced
    train = by_split["train"]
    minority = train["even-indoor-sky"] + train["odd-outdoor"]
    assert 0.04 < minority / sum(train.values()) < 0.2  # about 1 - correlation
    assert all((bench / r["file"]).is_file() for r in rows)
    boxes = sorted((bench / "masks-box").rglob("*.png"))
    assert len(boxes) == 16 and len(sorted((bench / "masks-exact").rglob("*.png"))) == 16


def test_test_masks_leave_the_images_alone(bench, tmp_path):
    """--test-masks adds a box and an exact mask for every test image; every image is byte for byte the same."""
    import numpy as np
    from PIL import Image

    out = tmp_path / "wb"
    assert main(["waterbirds", "--out", str(out), "--size", "32", "--n-train", "240", "--n-val", "40", "--n-test", "80",
                 "--per-class", "8", "--correlation", "0.9", "--test-masks"]) == 0
    images = sorted(p.relative_to(bench) for p in bench.rglob("*.png"))
    assert all((out / p).read_bytes() == (bench / p).read_bytes() for p in images)
    tests = sorted(p.relative_to(bench / "test") for p in (bench / "test").rglob("*.png"))
    assert len(tests) == 80 and sorted(p.relative_to(out / "masks-test-box") for p in (out / "masks-test-box").rglob("*.png")) == tests
    for rel in tests[:10]:
        box, exact = (np.asarray(Image.open(out / f"masks-test-{k}" / rel)) > 127 for k in ("box", "exact"))
        ys, xs = np.nonzero(box)
        assert exact.any() and not exact[~box].any() and box.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)  # a filled box around the object


@pytest.mark.slow
def test_treat_reports_the_worst_group(bench, tmp_path, capsys):
    data = ["--data", f"imagefolder:{bench}", "--model", "tinycnn"]
    assert main(["train", *data, "--epochs", "2", "--out", str(tmp_path / "o")]) == 0
    assert main(["treat", *data, "--weights", str(tmp_path / "o" / "model.safetensors"), "--masks", str(bench / "masks-box"),
                 "--mask-format", "png", "--alpha", "0", "--beta", "1", "--epochs", "1", "--seeds", "0", "1",
                 "--groups", str(bench / "groups.csv"), "--out", str(tmp_path / "t")]) == 0
    s = json.loads((tmp_path / "t" / "summary.json").read_text())
    for arm in ("original", "treated", "control"):
        g = s[arm]["groups"]
        assert set(g["per_group"]) == {"even-outdoor", "even-indoor-sky", "odd-outdoor", "odd-indoor-sky"}
        # the mean over seeds of each seed's worst group is at most the worst of the per-group means
        assert g["worst"]["mean"] <= min(g["per_group"].values()) + 1e-9
        if arm == "original":
            assert g["worst"]["mean"] == pytest.approx(min(g["per_group"].values()))
        assert 0.0 <= g["average"]["mean"] <= 1.0
    head = s["verdict"][0]
    assert head["what"] == "worst-group test accuracy" and "random guessing's" in head["text"]
    from model_doctor.data.groups import chance_worst_group

    sizes = [sum(1 for r in csv.DictReader((bench / "groups.csv").open()) if r["file"].startswith("test/") and r["group"] == g)
             for g in s["treated"]["groups"]["per_group"]]
    assert head["chance"]["mean"] == pytest.approx(chance_worst_group(sizes, 2)[0])   # the test split's own groups
    said = capsys.readouterr().out
    assert "worst-group test accuracy:" in said and "random guessing" in said
    # the groups label the val/ images, so the default rule selects on the worst validation group, and
    # no annotated image is spent on selection: every held-out one reports
    assert s["selection"]["select_rule"] == "groups" and s["selection"]["select_rule_asked"] == "auto"
    assert s["masks"]["select"] == 0 and s["masks"]["report"] == s["masks"]["held_out"] > 0
    _check_chosen_on_the_worst_validation_group(bench, tmp_path / "t")
    from benchmarks.reliance_vs_truth import as_rows

    rows = as_rows(s)  # the summary as rows of the reliance check: truth = the cue-conflicting groups' accuracy
    odd_out, even_in = s["treated"]["groups"]["per_group"]["odd-outdoor"], s["treated"]["groups"]["per_group"]["even-indoor-sky"]
    assert len(rows) == 2 and sum(r["treated"]["test_acc"] for r in rows) / 2 == pytest.approx((odd_out + even_in) / 2)
    w = ["--weights", str(tmp_path / "o" / "model.safetensors")]
    assert main(["diagnose", *data, *w, "--samples-per-class", "5", "--min-confidence", "0", "--allow-empty-classes",
                 "--out", str(tmp_path / "d")]) == 0
    assert main(["examine", *data, *w, "--diagnosis", str(tmp_path / "d"), "--groups", str(bench / "groups.csv"),
                 "--out", str(tmp_path / "e")]) == 0
    g = json.loads((tmp_path / "e" / "examine_summary.json").read_text())["groups"]
    assert len(g["per_group"]) == 4 and g["worst"] == min(g["per_group"].values())
    assert 0 < g["chance"]["mean"] < 0.5


def _check_chosen_on_the_worst_validation_group(bench, out):
    """Each arm's kept epoch is the one with the best worst-group validation accuracy, and the saved
    model reproduces that accuracy, recomputed here from the CSV and the val/ images."""
    from model_doctor.config import Config
    from model_doctor.data.groups import group_accuracy, load_groups
    from model_doctor.runtime import load_data, load_model

    for arm in ("treated", "control"):
        rows = [json.loads(x) for x in (out / "seed0" / arm / "metrics.jsonl").read_text().splitlines()]
        best = max(rows, key=lambda r: (r["val_worst_group"], -r["epoch"]))
        cfg = Config()
        cfg.data.name, cfg.model.weights = f"imagefolder:{bench}", str(out / "seed0" / arm / "model.safetensors")
        model, meta = load_model(cfg)
        val = load_data(cfg, "val", meta["in_channels"])
        g = group_accuracy(model, val, *load_groups(bench / "groups.csv", val, "val"))
        assert g["worst"] == pytest.approx(best["val_worst_group"])
        assert best["select_score"] == pytest.approx(g["worst"] + 1e-3 * g["average"])


def test_validation_carved_from_train_takes_its_groups_from_train_rows(bench):
    from torch.utils.data import Subset

    from model_doctor.data.folder import MaskedImageFolder
    from model_doctor.data.groups import load_groups

    train = MaskedImageFolder(bench / "train", image_size=32, in_channels=3)
    part = Subset(train, [3, 0, 7])
    idx, names = load_groups(bench / "groups.csv", part, "train")
    rows = {r["file"]: r["group"] for r in csv.DictReader((bench / "groups.csv").open())}
    assert [names[i] for i in idx.tolist()] == [rows[f"train/{train.samples[i][0]}"] for i in (3, 0, 7)]


def test_select_rule_auto_needs_the_validation_groups():
    from model_doctor.treatment.selection import resolve_rule

    assert resolve_rule("auto", True) == "groups" and resolve_rule("auto", False) == "swap"
    assert resolve_rule("mean", True) == "mean"
    with pytest.raises(ValueError, match="--select-rule groups needs group labels"):
        resolve_rule("groups", False)


def test_a_groups_csv_missing_images_is_one_line(bench, tmp_path, capsys):
    bad = tmp_path / "g.csv"
    bad.write_text("file,group\ntest/even/00000.png,a\n")
    assert main(["treat", "--data", f"imagefolder:{bench}", "--model", "tinycnn", "--weights", str(tmp_path / "none.safetensors"),
                 "--groups", str(bad), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("names no group" in err[0] or "none.safetensors" in err[0])
