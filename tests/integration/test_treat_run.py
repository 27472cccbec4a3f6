"""`treat` runs: summary contents, test split read only at the end, kill + resume = uninterrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from model_doctor import experiment
from model_doctor.cli import main
from model_doctor.config import Config
from model_doctor.data.datasets import load_dataset
from model_doctor.jobs import run_treat


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    out = tmp_path_factory.mktemp("orig")
    assert main(["train", "--data", "digits", "--model", "tinycnn", "--epochs", "6", "--batch-size", "32",
                 "--out", str(out)]) == 0
    return out / "model.safetensors"


def _treat_cfg(weights, out, epochs=2):
    cfg = Config(out=str(out))
    cfg.model.weights = str(weights)
    cfg.diagnose.layers = "features.8"
    cfg.diagnose.samples_per_class = 10
    cfg.diagnose.min_confidence = 0.5
    cfg.diagnose.noise_draws = 2
    cfg.diagnose.allow_empty_classes = True
    cfg.treat.epochs, cfg.treat.noise_draws, cfg.treat.batch_size = epochs, 2, 64
    return cfg


class Recorder(torch.utils.data.Dataset):
    def __init__(self, base, events):
        self.base, self.events = base, events

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.events.append("test")
        return self.base[i]


def test_test_split_only_read_after_training(original, tmp_path, monkeypatch):
    events = []
    real_fit = experiment.fit

    def fit(*a, **k):
        events.append("fit")
        out = real_fit(*a, **k)
        events.append("fit-done")
        return out

    monkeypatch.setattr(experiment, "fit", fit)
    test = Recorder(load_dataset("digits", "test"), events)
    summary = run_treat(_treat_cfg(original, tmp_path / "t"), log=lambda s: None, test_data=test)
    first_test = events.index("test")
    assert events[:first_test] == ["fit", "fit-done", "fit", "fit-done"]  # treated, control, then test
    assert set(events[first_test:]) == {"test"}
    for arm in ("original", "treated", "control"):
        assert 0.0 <= summary[arm]["test_acc"] <= 1.0 and len(summary[arm]["per_class"]) == 10
    on_disk = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert on_disk["treated"]["test_acc"] == summary["treated"]["test_acc"]
    assert "config" in on_disk and (tmp_path / "t" / "config.yaml").is_file()
    lines = (tmp_path / "t" / "seed0" / "treated" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "loss_channel" in json.loads(lines[0])


def _cli(weights, out, extra=()):
    return [sys.executable, "-m", "model_doctor", "treat", "--weights", str(weights), "--layers", "features.8",
            "--samples-per-class", "10", "--min-confidence", "0.5", "--noise-draws", "2", "--allow-empty-classes",
            "--treat-noise-draws", "2", "--epochs", "3", "--no-control", "--out", str(out), *extra]


@pytest.mark.slow
def test_sigkill_in_second_epoch_then_resume_equals_uninterrupted(original, tmp_path):
    env = {**os.environ, "MODEL_DOCTOR_QUIET": "1", "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    subprocess.run(_cli(original, full), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(original, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "seed0" / "treated" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 1:
            break
        time.sleep(0.02)
    time.sleep(0.05)  # now inside epoch 2 (short: since selection skips the colour-matched swap an epoch here lasts < 0.3 s)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(metrics.read_text().splitlines()) == 1, "killed outside the second epoch"
    assert not (killed / "summary.json").exists()

    subprocess.run(_cli(original, killed, ["--resume"]), check=True, env=env, capture_output=True)
    a = load_file(str(full / "seed0" / "treated" / "model.safetensors"))
    b = load_file(str(killed / "seed0" / "treated" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert len(metrics.read_text().splitlines()) == 3


def test_bad_treat_inputs(original, tmp_path, capsys):
    assert main(["treat", "--out", str(tmp_path / "a")]) == 2
    assert "needs the trained original" in capsys.readouterr().err
    assert main(["treat", "--weights", str(original), "--alpha", "-1", "--layers", "features.8",
                 "--samples-per-class", "5", "--min-confidence", "0.5", "--allow-empty-classes",
                 "--out", str(tmp_path / "b")]) == 2
    assert "alpha=-1" in capsys.readouterr().err
    assert main(["treat", "--weights", str(original), "--beta", "1", "--out", str(tmp_path / "c")]) == 2
    assert "masks" in capsys.readouterr().err


def test_bf16_runs_and_fp16_is_refused(original, tmp_path, capsys):
    out = tmp_path / "bf16"
    assert main(["treat", "--weights", str(original), "--layers", "features.8", "--samples-per-class", "5",
                 "--min-confidence", "0.5", "--allow-empty-classes", "--treat-noise-draws", "1", "--epochs", "1",
                 "--no-control", "--precision", "bf16", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["treated"]["test_acc"] <= 1.0
    assert main(["train", "--data", "digits", "--model", "tinycnn", "--epochs", "1", "--precision", "fp16",
                 "--out", str(tmp_path / "fp16")]) == 2
    assert "GradScaler" in capsys.readouterr().err
