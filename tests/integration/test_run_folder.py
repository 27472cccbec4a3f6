"""Nothing lost on a second run: a used --out is refused (folder byte-identical) unless --resume or
--overwrite; a diverged arm exits non-zero after writing what it has; NaN weights and a mismatched
diagnosis get errors that name the file and the counts."""

import json

import pytest
import torch

from model_doctor.cli import DIVERGED_EXIT, main

TINY = ["--data", "digits", "--model", "tinycnn"]
DIAG = ["--min-confidence", "0", "--samples-per-class", "3", "--noise-draws", "1", "--allow-empty-classes"]


def _bytes(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (lock included) with its bytes: the folder as a user would find it."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(capsys, argv, folder, *words) -> str:
    before = _bytes(folder)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "--resume" in err and "--overwrite" in err and str(folder) in err, err
    for w in words:
        assert w in err, err
    assert _bytes(folder) == before  # nothing written, nothing removed
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("orig")
    assert main(["train", *TINY, "--epochs", "3", "--out", str(out)]) == 0
    return out


def test_train_refuses_a_finished_and_an_interrupted_run(trained, tmp_path, capsys):
    from model_doctor.config import Config
    from model_doctor.jobs import run_train

    argv = ["train", *TINY, "--epochs", "3"]
    _refused(capsys, [*argv, "--out", str(trained)], trained, "a finished train run (summary.json)")

    killed = tmp_path / "killed"
    cfg = Config(out=str(killed))
    cfg.data.name, cfg.model.name, cfg.train.epochs = "digits", "tinycnn", 3

    def stop(line: str) -> None:  # interrupted once epoch 1's checkpoint is written
        if line.startswith("epoch 1:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(cfg, log=stop)
    _refused(capsys, [*argv, "--out", str(killed)], killed, "an interrupted train run (stopped after epoch 1 of 3)")
    assert main([*argv, "--out", str(killed), "--resume", "--overwrite"]) == 2
    assert "both given" in capsys.readouterr().err
    assert main([*argv, "--out", str(killed), "--resume"]) == 0   # continues to the uninterrupted run's weights
    from safetensors.torch import load_file

    a, b = load_file(str(trained / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_overwrite_removes_only_the_commands_own_files(trained, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "old").mkdir()
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "old").is_dir()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2   # started over, not resumed
    capsys.readouterr()


def test_another_commands_folder_is_refused_even_with_overwrite(trained, capsys):
    w = str(trained / "model.safetensors")
    for extra in ([], ["--overwrite"]):
        before = _bytes(trained)
        assert main(["diagnose", "--weights", w, *DIAG, "--out", str(trained), *extra]) == 2
        err = capsys.readouterr().err
        assert "holds a finished train run (summary.json), not a diagnose run" in err
        assert _bytes(trained) == before


def test_diagnose_and_examine_refuse_resume_and_overwrite(trained, tmp_path, capsys):
    w = str(trained / "model.safetensors")
    diag = tmp_path / "diag"
    d_argv = ["diagnose", "--weights", w, *DIAG, "--out", str(diag)]
    assert main(d_argv) == 0
    _refused(capsys, d_argv, diag, "a finished diagnose run (diagnosis.json)")
    before = _bytes(diag)
    assert main([*d_argv, "--resume"]) == 0 and _bytes(diag) == before   # finished: nothing rewritten
    assert "nothing to resume" in capsys.readouterr().out
    assert main([*d_argv, "--overwrite"]) == 0 and (diag / "diagnosis.json").is_file()

    ex = tmp_path / "ex"
    e_argv = ["examine", "--weights", w, "--diagnosis", str(diag), "--limit", "16", "--out", str(ex)]
    assert main(e_argv) == 0
    _refused(capsys, e_argv, ex, "a finished examine run (examine_summary.json)")
    before = _bytes(ex)
    assert main([*e_argv, "--resume"]) == 0 and _bytes(ex) == before
    (ex / "examine_summary.json").unlink()   # as if killed before its last file
    _refused(capsys, e_argv, ex, "an interrupted examine run (no examine_summary.json yet)")
    assert main([*e_argv, "--resume"]) == 0 and (ex / "examine_summary.json").is_file()
    capsys.readouterr()


def test_select_never_loses_the_users_annotations(trained, tmp_path, capsys):
    w = str(trained / "model.safetensors")
    out = tmp_path / "annotate"
    argv = ["select", "--weights", w, "--per-class", "2", "--out", str(out)]
    assert main(argv) == 0
    stubs = sorted(out.rglob("*.json"))
    assert len(stubs) == 20
    mine = stubs[0]
    data = json.loads(mine.read_text())
    data["shapes"] = [{"label": "0", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}]
    mine.write_text(json.dumps(data))
    kept = mine.read_bytes()
    _refused(capsys, argv, out, "a finished select run (index.csv)")
    assert main([*argv, "--overwrite"]) == 0
    assert mine.read_bytes() == kept and mine.with_suffix(".png").is_file()   # the shapes and their image stay
    assert "1 LabelMe files that already held shapes were kept" in capsys.readouterr().out
    assert main([*argv, "--resume"]) == 0 and mine.read_bytes() == kept


def test_a_diverged_treatment_exits_non_zero_after_writing(trained, tmp_path, capsys):
    out = tmp_path / "tr"
    argv = ["treat", "--weights", str(trained / "model.safetensors"), *DIAG, "--treat-noise-draws", "1", "--epochs", "2",
            "--lr", "1e9", "--out", str(out)]
    assert main(argv) == DIVERGED_EXIT
    cap = capsys.readouterr()
    s = json.loads((out / "summary.json").read_text())   # what it has is written
    assert {d["arm"] for d in s["diverged"]} == {"treated", "control"}
    assert s["verdict"][0]["what"] == "diverged" and "lower --lr (now 1e+09)" in s["verdict"][0]["text"]
    assert "verdict: training diverged: seed 0 treated" in cap.out
    assert "training diverged (seed 0 treated, seed 0 control)" in cap.err and len(cap.err.strip().splitlines()) == 1
    _refused(capsys, argv, out, "a finished treat run (summary.json)")   # and a rerun keeps it


def test_divergence_rule():
    from model_doctor.study import divergence, guess_ceiling

    ceiling = guess_ceiling([18] * 10)   # 180 balanced images of 10 classes: 10 % ± 2 s.e.
    assert ceiling == pytest.approx(0.1 + 2 * (0.1 * 0.9 / 180) ** 0.5)
    assert divergence({"skipped_steps": 1, "steps": 230, "val_acc": 0.9}, ceiling) is None   # a rare bad step
    assert "9 of its 230 steps" in divergence({"skipped_steps": 9, "steps": 230, "val_acc": 0.9}, ceiling)
    assert "no better than guessing" in divergence({"skipped_steps": 0, "steps": 230, "val_acc": 0.103}, ceiling)
    assert divergence({"skipped_steps": 0, "steps": 230, "val_acc": 0.103}, None) is None   # the original guesses too
    assert divergence({"val_acc": float("nan"), "diverged": "treated: 11 steps had a non-finite loss (last: {})"})


def test_nan_weights_name_the_file(trained, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    state = load_file(str(trained / "model.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_file(state, str(bad))
    assert main(["diagnose", "--model", "tinycnn", "--weights", str(bad), *DIAG, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite values" in err and str(bad) in err and key in err

    factory = tmp_path / "net.py"   # a file: model whose factory returns its own (NaN) weights
    factory.write_text("import torch\nfrom torch import nn\n\ndef make(num_classes=10, in_channels=1):\n"
                       "    m = nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),"
                       " nn.Linear(4, num_classes))\n    torch.nn.init.constant_(m[4].weight, float('inf'))\n    return m\n")
    assert main(["diagnose", "--model", f"file:{factory}:make", "--num-classes", "10", *DIAG,
                 "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite values" in err and f"file:{factory}:make" in err and "--weights" not in err.split(";")[0]
