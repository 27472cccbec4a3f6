"""Noise streams: a batch's noise is each sample's own stream, however it is drawn."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from model_doctor import noise as nz
from model_doctor.noise import batch_noise, noise_codes, noise_threads, sample_noise


def _serial(seed, layer, keys, draws, shape, delta):
    return torch.cat([sample_noise(seed, layer, k, draws, shape, delta) for k in keys])


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_threaded_batch_equals_per_sample_streams(threads, monkeypatch):
    monkeypatch.setattr(nz, "PARALLEL_MIN_CODES", 0)  # force the pool even for this small batch
    keys = [7, 0, 123456789, 3, 3, 11]  # a repeated key draws the same noise twice
    got = batch_noise(5, 2, keys, 4, (3, 5, 5), 0.2, threads=threads)
    assert got.shape == (len(keys) * 4, 3, 5, 5)
    assert torch.equal(got, _serial(5, 2, keys, 4, (3, 5, 5), 0.2))
    assert torch.equal(got[16:20], got[12:16]) and not torch.equal(got[:4], got[4:8])


def test_large_batch_uses_the_pool_and_matches(monkeypatch):
    calls = []
    real = nz._pool
    monkeypatch.setattr(nz, "_pool", lambda n: calls.append(n) or real(n))
    keys = list(range(40))
    shape = (64, 8, 8)  # 40 * 10 * 4096 codes > PARALLEL_MIN_CODES
    got = batch_noise(0, 0, keys, 10, shape, 0.1, threads=4)
    assert calls == [4]
    assert torch.equal(got, _serial(0, 0, keys, 10, shape, 0.1))


def test_values_are_the_documented_levels():
    codes = noise_codes(1, 0, 9, 1000).astype(np.float64)
    got = sample_noise(1, 0, 9, 1, (1000,), 0.5, torch.float64)[0]
    assert torch.equal(got, torch.from_numpy((codes + 0.5) / 32768 * 0.5))
    assert float(got.abs().max()) < 0.5


def test_noise_threads_limits(monkeypatch):
    monkeypatch.delenv("MODEL_DOCTOR_NOISE_THREADS", raising=False)
    assert noise_threads("cpu") == 1  # torch's own threads do the work on the CPU
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert noise_threads("cuda") == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")  # 16 GPU processes share 64 cores
    assert noise_threads("cuda:3") == 4
    monkeypatch.setenv("MODEL_DOCTOR_NOISE_THREADS", "3")
    assert noise_threads("cpu") == 3
    for bad in ("many", "0", "-2"):
        monkeypatch.setenv("MODEL_DOCTOR_NOISE_THREADS", bad)
        with pytest.raises(ValueError, match=f"MODEL_DOCTOR_NOISE_THREADS='{bad}'; use a positive integer"):
            noise_threads("cpu")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_draws_without_the_parents_pool():
    """A DataLoader worker forked after the pool started must not wait on threads it does not have."""
    code = (
        "import os, sys, torch\n"
        "from model_doctor import noise as nz\n"
        "nz.PARALLEL_MIN_CODES = 0\n"
        "a = nz.batch_noise(0, 0, range(8), 2, (4, 4), 0.1, threads=2)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    b = nz.batch_noise(0, 0, range(8), 2, (4, 4), 0.1, threads=2)\n"
        "    os._exit(0 if torch.equal(a, b) else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], timeout=30)
    assert res.returncode == 0
