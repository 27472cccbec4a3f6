"""Shared by the benchmark scripts: the provenance header and writing the markdown table."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

import torch


def header(title: str, script: str, budget: str) -> list[str]:
    return [f"# {title} ({budget})", "", f"Command: `python -m benchmarks.{script.removesuffix('.py')} --budget {budget}`  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, CPU only  ", f"Date: {datetime.date.today().isoformat()}", ""]


def provenance(path: Path) -> tuple[str | None, str | None]:
    """(command, date) a table records in the ``.md`` beside its JSON (the ``Command: `...` `` and ``Date:``
    lines ``header`` writes); None for a line, or both where no such file sits beside it."""
    md = Path(path).with_suffix(".md")
    command = date = None
    for line in md.read_text().splitlines() if md.is_file() else ():
        if command is None and line.startswith("Command:") and "`" in line:
            command = line.split("`")[1]
        elif date is None and line.startswith("Date:"):
            date = line.split(":", 1)[1].strip()
    return command, date


#: header lines that say where and when a table was made, not what it measured
_PROVENANCE = ("Machine: ", "Date: ")


def _measured(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(_PROVENANCE)]


def emit(lines: list[str], out: str | None) -> int:
    """Print the markdown and, with ``out``, write it atomically (e.g. under docs/results/). A file
    whose every other line is the same is left as it is: a table rebuilt from cached runs keeps the
    machine and date it was measured on, and its diff stays empty."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        from model_doctor.io import atomic_write_text

        path = Path(out)
        if path.is_file() and _measured(path.read_text()) == _measured(text):
            print(f"{out}: unchanged but for its machine and date lines; kept as it was", file=sys.stderr)
            return 0
        atomic_write_text(out, text)
    return 0


def interleaved(arms, rounds: int, *, warmup: int = 1, sync=None, keep_going=None) -> dict[str, list[float]]:
    """Time each arm once per round, ``rounds`` times, rotating the order every round so that no
    arm always runs first (or right after the heaviest one); ``warmup`` untimed calls each first.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before and after each timed call;
    ``keep_going()`` returning False ends the rounds early (a budget).
    """
    import time

    names = list(arms)
    for _ in range(warmup):
        for k in names:
            arms[k]()
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        if keep_going is not None and not keep_going():
            break
        for k in names[r % len(names):] + names[:r % len(names)]:
            if sync:
                sync()
            t = time.perf_counter()
            arms[k]()
            if sync:
                sync()
            out[k].append(time.perf_counter() - t)
    return out


def spread(xs, fmt: str = ".2f") -> str:
    """``median (min–max)`` formatted with ``fmt``, or an em dash when nothing was measured."""
    import statistics

    if not xs:
        return "—"
    return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"


def per_round(a, b, scale: float = 1.0) -> list[float]:
    """Round-by-round ratios ``scale · a_i / b_i`` (arms timed in the same round share its load)."""
    return [scale * x / y for x, y in zip(a, b)]


def judge(treated: list[dict], control: list[dict], originals: list[dict], images: int, chance: float,
          headline: str = "swap_acc") -> list[dict]:
    """``treat``'s verdict lines on seeds that separate runs wrote (each with its own original): the
    library's :func:`~model_doctor.treatment.verdicts.judge_reliance` on their reliance figures, the
    originals' mean as the original. ``headline``: the figure the runs put first (``matched_swap_acc``:
    they ran with ``--object-colour cue``). No rule of the verdict is restated here."""
    import statistics

    from model_doctor.treatment.verdicts import judge_reliance

    keys = ("swap_acc", "bg_only_acc")
    orig = ({**{k: statistics.mean(o[k] for o in originals) for k in keys}, "chance": chance,
             "images": images * len(originals)} if originals and all(k in o for o in originals for k in keys) else None)
    add = lambda rel: {**rel, "chance": chance}
    word = "cue" if headline == "matched_swap_acc" else "unknown"
    return judge_reliance([add(t) for t in treated], [add(c) for c in control], images, orig, word)
