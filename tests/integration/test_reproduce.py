"""`model-doctor reproduce`: a tiny grid runs, writes a Table-1 markdown, and resumes."""

import json

import pytest

from model_doctor.cli import main
from model_doctor.reproduce import load_grid

TINY = """
models: [smallcnn]
datasets: [digits, decoy-digits]
seeds: [0]
train_subset: 800
test_subset: 200
train: {{epochs: 10}}
treat: {{epochs: 1, annotated_per_class: 5}}
diagnose: {{samples_per_class: 10, min_confidence: 0.5, noise_draws: 2}}
out: {out}
"""


@pytest.mark.slow
def test_tiny_grid_runs_and_resumes(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    out = tmp_path / "out"
    grid.write_text(TINY.format(out=out))
    assert main(["reproduce", str(grid)]) == 0
    first = capsys.readouterr().out
    table = (out / "table.md").read_text()
    assert "### digits" in table and "### decoy-digits (test split with shuffled decoys" in table and "Δ +Channel" in table
    cells = json.loads((out / "cells.json").read_text())
    got = {(c["dataset"], c["variant"]) for c in cells["cells"]}
    assert got == {("digits", v) for v in ("base", "control", "channel")} | \
        {("decoy-digits", v) for v in ("base", "control", "channel", "space", "all")}
    assert len(cells["skipped"]) == 2 and all("no masks for digits" in s for s in cells["skipped"])
    assert "(cached)" not in first
    # a plain rerun is refused with the folder untouched; --resume trains nothing: every finished cell loads
    files = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert main(["reproduce", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "already holds a finished reproduce run (cells.json)" in err and "--resume" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == files
    assert main(["reproduce", str(grid), "--resume"]) == 0
    second = capsys.readouterr().out
    assert second.count("(cached)") == 8
    assert json.loads((out / "cells.json").read_text()) == cells
    assert main(["reproduce", str(grid), "--dry-run"]) == 0
    assert "8 finished" in capsys.readouterr().out


def test_bad_grid_is_a_one_line_error(tmp_path, capsys):
    grid = tmp_path / "bad.yaml"
    grid.write_text("models: [smallcnn]\nepochs: 3\n")
    assert main(["reproduce", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "unknown grid key 'epochs'" in err and len(err.strip().splitlines()) == 1
    grid.write_text("variants: [base, magic]\n")
    assert main(["reproduce", str(grid)]) == 2
    assert "unknown variant 'magic'" in capsys.readouterr().err
    grid.write_text("models: [resnet9000]\n")
    assert main(["reproduce", str(grid)]) == 2
    assert "unknown model 'resnet9000'" in capsys.readouterr().err
    assert main(["reproduce", str(tmp_path / "missing.yaml")]) == 2
    assert "cpu-small, paper" in capsys.readouterr().err


def test_shipped_grids_load():
    paper = load_grid("paper")
    assert len(paper.models) == 16 and len(paper.datasets) == 7 and paper.diagnose.noise_draws == 10
    assert paper.treat.annotated_per_class == 20 and paper.seeds == [0, 1, 2]
    small = load_grid("cpu-small")
    assert small.datasets == ["digits", "decoy-digits"]
