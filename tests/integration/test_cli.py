"""The CLI end to end on a tiny run: train -> diagnose -> examine, configs saved, clean errors."""

import json
import subprocess
import sys

import pytest
import yaml

from model_doctor.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    assert main(["train", "--data", "digits", "--model", "tinycnn", "--epochs", "2", "--out", str(out)]) == 0
    return out


def test_train_writes_model_and_summary(trained):
    summary = json.loads((trained / "summary.json").read_text())
    assert 0.0 <= summary["test_acc"] <= 1.0
    assert (trained / "model.safetensors").is_file() and (trained / "model.json").is_file()
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["model"]["name"] == "tinycnn"
    assert len((trained / "metrics.jsonl").read_text().splitlines()) == 2


def test_diagnose_and_examine(trained, tmp_path):
    dcfg = tmp_path / "d.yaml"
    dcfg.write_text(yaml.safe_dump({"diagnose": {"samples_per_class": 5, "noise_draws": 2, "min_confidence": 0.0,
                                                 "allow_empty_classes": True}}))
    ddir = tmp_path / "diag"
    rc = main(["diagnose", "--weights", str(trained / "model.safetensors"), "--config", str(dcfg),
               "--layers", "auto:2", "--noise-draws", "3", "--out", str(ddir)])
    assert rc == 0
    resolved = yaml.safe_load((ddir / "config.yaml").read_text())
    assert resolved["diagnose"]["noise_draws"] == 3  # flag overrides YAML
    assert resolved["diagnose"]["samples_per_class"] == 5  # YAML overrides default
    meta = json.loads((ddir / "diagnosis.json").read_text())
    assert meta["class_names"] == [str(i) for i in range(10)] and len(meta["layers"]) == 2
    edir = tmp_path / "ex"
    assert main(["examine", "--weights", str(trained / "model.safetensors"), "--diagnosis", str(ddir),
                 "--limit", "40", "--out", str(edir)]) == 0
    ranked = json.loads((edir / "examination.json").read_text())["ranked"]
    assert len(ranked) == 40 and ranked[0]["deviation"] >= ranked[-1]["deviation"]
    assert (edir / "examine_summary.json").is_file()


def test_bad_input_is_one_line_error(trained, tmp_path, capsys):
    rc = main(["diagnose", "--weights", str(trained / "model.safetensors"), "--layers", "features.99",
               "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "unknown layer 'features.99'" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("diagnose:\n  nosie: 0.1\n")
    assert main(["diagnose", "--config", str(bad), "--out", str(tmp_path / "y")]) == 2
    assert "unknown config key diagnose.'nosie'" in capsys.readouterr().err
    assert main(["diagnose", "--weights", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "z")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "model_doctor", "diagnose", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--noise-draws" in out.stdout and "smallcnn" in out.stdout
