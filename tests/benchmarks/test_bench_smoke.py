"""The benchmark scripts run (small budget) and print the tables they promise."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("script,expect", [("bench_treat.py", "treat step ÷ plain step"),
                                           ("bench_diagnose.py", "naive loop ÷ ours")])
def test_benchmark_small_budget(script, expect, tmp_path):
    out = tmp_path / "result.md"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--budget", "small", "--out", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    assert expect in text and "Command: `python benchmarks/" in text and text.count("\n|") >= 4
