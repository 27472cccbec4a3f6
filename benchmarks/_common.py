"""Shared by the benchmark scripts: the provenance header and writing the markdown table."""

from __future__ import annotations

import datetime
import os
import platform

import torch


def header(title: str, script: str, budget: str) -> list[str]:
    return [f"# {title} ({budget})", "", f"Command: `python benchmarks/{script} --budget {budget}`  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, CPU only  ", f"Date: {datetime.date.today().isoformat()}", ""]


def emit(lines: list[str], out: str | None) -> int:
    """Print the markdown and, with ``out``, write it atomically (e.g. under docs/results/)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        from model_doctor.io import atomic_write_text

        atomic_write_text(out, text)
    return 0
