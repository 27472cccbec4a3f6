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
    assert cfg["device"] == "cpu" and cfg["resolved"]["device"] == "cpu"


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
