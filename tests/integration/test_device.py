"""--device on every job: resolved and saved, never a silent fallback (CPU machine checks)."""

import pytest
import torch
import yaml

from model_doctor.cli import main
from model_doctor.distributed import resolve_device


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        for spec in ("cuda", "cuda:0", "CUDA:1"):
            with pytest.raises(ValueError, match="no usable CUDA device"):
                resolve_device(spec)
    with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("orig")
    assert main(["train", "--data", "digits", "--model", "tinycnn", "--epochs", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    return out


def test_resolved_device_is_saved(trained):
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    assert cfg["runtime"]["device"] == "cpu" and cfg["resolved"]["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
@pytest.mark.parametrize("job", ["train", "diagnose", "examine", "treat", "select", "analyze"])
def test_every_job_honours_device_cuda_without_cuda(trained, tmp_path, capsys, job):
    w = ["--weights", str(trained / "model.safetensors")]
    args = {"train": ["train", "--data", "digits", "--model", "tinycnn", "--epochs", "1"],
            "diagnose": ["diagnose", *w], "examine": ["examine", *w, "--diagnosis", str(tmp_path)],
            "treat": ["treat", *w], "select": ["select", *w], "analyze": ["analyze", "robustness", *w]}[job]
    assert main([*args, "--device", "cuda", "--out", str(tmp_path / job)]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: this machine has no usable CUDA device" in err and len(err.strip().splitlines()) == 1


def test_bf16_diagnose_and_examine_track_fp32(trained, tmp_path):
    """bf16 autocast (CPU autocast here; the same code path as CUDA): the correlation profile and the
    deviation scores stay close to fp32, sums stay float64, and the precision is recorded."""
    from model_doctor import Diagnosis

    w = ["--weights", str(trained / "model.safetensors"), "--min-confidence", "0", "--allow-empty-classes"]
    for p in ("fp32", "bf16"):
        assert main(["diagnose", *w, "--precision", p, "--out", str(tmp_path / f"d_{p}")]) == 0
        assert main(["examine", "--weights", str(trained / "model.safetensors"), "--diagnosis", str(tmp_path / f"d_{p}"),
                     "--precision", p, "--limit", "64", "--out", str(tmp_path / f"e_{p}")]) == 0
    d32, d16 = (Diagnosis.load(tmp_path / f"d_{p}") for p in ("fp32", "bf16"))
    assert d16.settings["precision"] == "bf16" and d32.settings["precision"] == "fp32"
    for name in d32.layers:
        a, b = d32.correlations[name], d16.correlations[name]
        assert b.dtype == torch.float64 and not torch.equal(a, b)  # bf16 really ran
        assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99
        assert ((a - b).abs().max() / a.abs().max()) < 0.1
    cfg = yaml.safe_load((tmp_path / "e_bf16" / "config.yaml").read_text())
    assert cfg["runtime"]["precision"] == "bf16"


def test_fp16_is_refused_everywhere(trained, tmp_path, capsys):
    w = ["--weights", str(trained / "model.safetensors")]
    for args in (["diagnose", *w], ["examine", *w, "--diagnosis", str(tmp_path)], ["treat", *w]):
        assert main([*args, "--precision", "fp16", "--out", str(tmp_path / args[0])]) == 2
        assert "GradScaler" in capsys.readouterr().err


def test_diagnose_estimate_predicts_the_run(trained, tmp_path, capsys):
    """`diagnose --estimate` writes no diagnosis, prints one line, and predicts the real run's time
    within a loose factor (timings on a shared machine; the check is that the model is not off by
    an order of magnitude)."""
    import json
    import time

    w = ["--weights", str(trained / "model.safetensors"), "--min-confidence", "0", "--allow-empty-classes",
         "--samples-per-class", "1000"]
    assert main(["diagnose", *w, "--estimate", "--out", str(tmp_path / "est")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("estimate: about ") and "GFLOPs" in line
    est = json.loads((tmp_path / "est" / "estimate.json").read_text())
    assert not (tmp_path / "est" / "diagnosis.json").exists()
    assert est["candidates"] == est["selected_at_most"] > 0 and est["gflops"] > est["gflops_selection"] > 0
    t = time.perf_counter()
    assert main(["diagnose", *w, "--out", str(tmp_path / "real")]) == 0
    real = time.perf_counter() - t
    assert 0.1 < est["estimate_seconds"] / real < 10, (est["estimate_seconds"], real)


def test_model_with_bf16_weights_still_diagnoses():
    """The float32 cast under autocast must not touch a model whose own weights are bf16."""
    import warnings

    from torch.utils.data import TensorDataset

    from model_doctor import diagnose
    from model_doctor.models import build_model

    model = build_model("tinycnn").to(torch.bfloat16).eval()
    x = torch.randn(8, 1, 32, 32)
    with torch.no_grad():
        y = model(x.bfloat16()).argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diag = diagnose(model, TensorDataset(x, y), "features.8", num_classes=10, min_confidence=0.0,
                        allow_empty_classes=True, noise_draws=2)
    corr = diag.correlations["features.8"]
    assert corr.dtype == torch.float64 and torch.isfinite(corr).all() and corr.sum() > 0


def test_estimate_in_a_treat_config_is_refused(trained, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("diagnose:\n  estimate: true\n")
    assert main(["treat", "--config", str(cfg), "--weights", str(trained / "model.safetensors"),
                 "--out", str(tmp_path / "t")]) == 2
    assert "only `model-doctor diagnose` estimates" in capsys.readouterr().err


def test_torchrun_rank_takes_its_local_gpu(monkeypatch):
    """Under torchrun `auto`/`cuda` mean cuda:LOCAL_RANK; an index past the GPUs is an error (CUDA mocked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # an explicit index wins
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="only 4 CUDA device"):
        resolve_device("cuda:4")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert resolve_device("cuda") == torch.device("cuda", 0)


def test_default_workers_follow_the_device(monkeypatch):
    import os

    from model_doctor.config import Config
    from model_doctor.runtime import workers as _workers

    cfg = Config()
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert _workers(cfg, "cpu") == 0
    assert _workers(cfg, "cuda:0") == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 GPU processes share 16 cores
    assert _workers(cfg, "cuda:3") == 3
    cfg.runtime.workers = 2
    assert _workers(cfg, "cpu") == 2
    cfg.runtime.workers = -1
    from model_doctor.validation import validate

    with pytest.raises(ValueError, match="runtime.workers=-1; use 0"):
        validate(cfg)


def test_workers_reach_every_loader_and_change_nothing(trained, tmp_path, monkeypatch):
    """`--workers N` is a flag of every job, saved in config.yaml, and the diagnosis, examination and
    selection loaders really use N worker processes, with the same numbers as N = 0."""
    from model_doctor import Diagnosis
    from model_doctor.data import base

    seen = []
    real = base.loader_for

    def spy(*args, **kw):
        seen.append(kw.get("num_workers", 0))
        return real(*args, **kw)

    import importlib

    for mod in ("model_doctor.diagnosis.engine", "model_doctor.diagnosis.examine", "model_doctor.training"):
        monkeypatch.setattr(importlib.import_module(mod), "loader_for", spy)
    w = ["--weights", str(trained / "model.safetensors")]
    for n in (0, 2):
        seen.clear()
        assert main(["diagnose", *w, "--min-confidence", "0", "--allow-empty-classes", "--workers", str(n),
                     "--out", str(tmp_path / f"d{n}")]) == 0
        assert seen and set(seen) == {n}, seen
        seen.clear()
        assert main(["examine", *w, "--diagnosis", str(tmp_path / f"d{n}"), "--limit", "40", "--workers", str(n),
                     "--out", str(tmp_path / f"e{n}")]) == 0
        assert seen and set(seen) == {n}, seen
        assert yaml.safe_load((tmp_path / f"e{n}" / "config.yaml").read_text())["runtime"]["workers"] == n
    a, b = (Diagnosis.load(tmp_path / f"d{n}") for n in (0, 2))
    assert a.sample_indices == b.sample_indices
    for name in a.layers:
        assert torch.equal(a.correlations[name], b.correlations[name])
    for job in (["select", *w, "--per-class", "1"], ["train", "--data", "digits", "--model", "tinycnn", "--epochs", "1"]):
        assert main([*job, "--workers", "1", "--device", "cpu", "--out", str(tmp_path / job[0])]) == 0
        assert yaml.safe_load((tmp_path / job[0] / "config.yaml").read_text())["runtime"]["workers"] == 1
