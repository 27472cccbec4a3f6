"""torchrun-style runs on CPU with gloo and 2 processes equal a single process."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from model_doctor.data.datasets import load_dataset
from model_doctor.models import SmallCNN
from model_doctor.training import FitConfig, fit

N_TRAIN, BATCH = 256, 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    ds = load_dataset("digits", "train")
    return torch.utils.data.Subset(ds, range(N_TRAIN)), torch.utils.data.Subset(ds, range(N_TRAIN, N_TRAIN + 64))


def _model():
    torch.manual_seed(0)
    return SmallCNN(1, 10, width=8)


def _run(out_dir: str, terms_diag):
    """Diagnose, then one treatment epoch (BatchNorm frozen); returns (correlation, weights)."""
    from model_doctor import diagnose
    from model_doctor.treatment import ModelDoctorLoss

    tr, va = _data()
    model = _model()
    diag = diagnose(model, tr, layers="auto:2", num_classes=10, samples_per_class=8, min_confidence=0.0,
                    noise_draws=3, batch_size=16, allow_empty_classes=True)
    loss = ModelDoctorLoss(diag, layers=["features.8"], alpha=1.0, noise_draws=2, seed=1)
    fit(model, tr, va, FitConfig(epochs=1, batch_size=BATCH, freeze_bn=True, seed=3), 10, terms=loss, out_dir=out_dir)
    return {k: diag.correlation(k) for k in diag.layers}, model.state_dict()


def _worker(rank: int, world: int, port: int, out_dir: str, result_dir: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), MODEL_DOCTOR_QUIET="1")
    torch.set_num_threads(1)
    import model_doctor.training as training
    from model_doctor.distributed import init_from_env, shutdown

    writes = []
    real_bytes, real_st = training.atomic_write_bytes, training.atomic_save_safetensors
    training.atomic_write_bytes = lambda p, d: (writes.append(str(p)), real_bytes(p, d))
    training.atomic_save_safetensors = lambda p, t, m=None: (writes.append(str(p)), real_st(p, t, m))
    assert init_from_env()
    try:
        corr, state = _run(out_dir, None)
        torch.save({"corr": corr, "state": state, "writes": writes}, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        shutdown()


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tmp_path):
    torch.set_num_threads(1)
    single_corr, single_state = _run(str(tmp_path / "single"), None)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for layer, ref in single_corr.items():  # the diagnosis matrices
        torch.testing.assert_close(r0["corr"][layer], ref, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(r1["corr"][layer], ref, rtol=1e-6, atol=1e-9)
    for k, v in single_state.items():  # one treatment epoch, per-rank batch B/2 vs one process with B
        if v.is_floating_point():
            torch.testing.assert_close(r0["state"][k], v, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(r1["state"][k], v, rtol=1e-4, atol=1e-5)
    assert r0["writes"] and not r1["writes"]  # only rank 0 wrote files
    assert (tmp_path / "ddp" / "checkpoint.pt").is_file()
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 1
    json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text())
