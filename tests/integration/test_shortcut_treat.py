"""`treat` with the space-wise methods on a decoy benchmark: held-out annotations, the weight chosen
without test data, background reliance and the verdict in summary.json and on the terminal."""

import json

import pytest

from model_doctor.cli import main


@pytest.fixture(scope="module")
def decoy_original(tmp_path_factory):
    out = tmp_path_factory.mktemp("decoy-orig")
    # 4 epochs at 0.05: it reads the decoy (val ~90 %, shuffled test ~50 %), so a fine-tune that fails shows as a
    # diverged arm, not as noise around a model that barely learned (exit 3: test_run_folder.py)
    assert main(["train", "--data", "decoy-digits", "--model", "tinycnn", "--epochs", "4", "--batch-size", "32",
                 "--lr", "0.05", "--out", str(out)]) == 0
    return out / "model.safetensors"


def _treat(weights, out, *extra):
    return ["treat", "--weights", str(weights), "--data", "decoy-digits", "--layers", "features.8",
            "--samples-per-class", "5", "--min-confidence", "0.0", "--allow-empty-classes", "--alpha", "0",
            "--annotated-per-class", "8", "--epochs", "1", "--pool-batch", "16", "--out", str(out), *extra]


@pytest.mark.slow
def test_counterfactual_two_weights_two_seeds(decoy_original, tmp_path, capsys):
    out = tmp_path / "cf"
    assert main(_treat(decoy_original, out, "--beta", "0.5", "2", "--seeds", "0", "1")) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["masks"]["train"] == 60 and s["masks"]["held_out"] == 20  # 8 per class: 6 train, 2 held out
    assert set(s["selection"]["chosen_beta"].values()) <= {0.5, 2.0} and s["selection"]["space_method"] == "counterfactual"
    for run in s["runs"]:  # the chosen weight is the one with the best selection score
        scores = {float(k): v for k, v in run["selection_scores"].items()}
        assert run["chosen_beta"] == max(scores, key=scores.get)
        assert "treated-beta0.5" in run and "treated-beta2" in run
    for arm in ("treated", "control"):
        rel = s[arm]["background_reliance"]["swap_acc"]
        assert 0.0 <= rel["mean"] <= 1.0
    assert 0.0 <= s["original"]["background_reliance"]["swap_acc"] <= 1.0
    assert [v["what"] for v in s["verdict"]][0] == "test accuracy" and s["verdict"][0]["seeds"] == 2
    assert "verdict: test accuracy: treated − control" in printed and "background-swap accuracy" in printed
    assert "[95 % interval over the 10 images]" in printed  # 1 report image per class, each figure with its interval
    rows = [json.loads(x) for x in (out / "seed0" / "treated-beta2" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["loss_counterfactual"] > 0 and "held_swap_acc" in rows[0] and "select_score" in rows[0]
    floor = s["selection"]["val_floor"]  # half the original's validation accuracy; under it an epoch scores val − 1
    assert floor == pytest.approx(0.5 * s["original"]["val_acc"]) and "selection floor: validation accuracy" in printed
    assert all((r["select_score"] < 0) == (r["val_acc"] < floor) for r in rows)


@pytest.mark.slow
def test_an_escalated_round_trains_every_arm_again_and_is_the_one_reported(decoy_original, tmp_path, capsys,
                                                                          monkeypatch):
    import model_doctor.treating.rounds as T

    seen = []

    def due(swaps, clean, below):  # the trigger forced (a 1-epoch tiny model may or may not trip it); its inputs kept
        seen.append((swaps, clean, below))
        return {"swap_acc": sum(swaps) / len(swaps), "original_clean_acc": clean, "below": below}

    monkeypatch.setattr(T, "escalation", due)
    out = tmp_path / "esc"
    assert main(_treat(decoy_original, out, "--beta", "1", "--escalate-epochs", "2")) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    esc = s["selection"]["escalation"]
    assert seen and seen[0][2] == 0.5 and len(seen[0][0]) == 1 and 0 <= seen[0][1] <= 1   # default share, 1 seed
    assert esc["fired"] and esc["epochs"] == 2 and esc["first_round_epochs"] == 1 and esc["selection_images"] == 10
    assert s["config"]["treat"]["kl_weight"] == 0 and s["config"]["treat"]["epochs"] == 2
    assert esc["chosen_beta_per_seed"] == [1.0]  # the first round's choice, kept beside the reported one
    assert s["runs"][0]["dir"] == "escalated/seed0"
    for arm in ("treated", "control"):  # both arms again, at the escalated schedule; the first round kept
        assert len((out / "escalated" / "seed0" / arm / "metrics.jsonl").read_text().splitlines()) == 2
        assert len((out / "seed0" / arm / "metrics.jsonl").read_text().splitlines()) == 1
    assert (out / "escalated" / "config.yaml").is_file()
    assert "escalating: on the selection set's 10 held-out images" in printed and "escalated: the first round" in printed
    from model_doctor.report import write_report

    html = write_report(out).read_text()
    assert "escalated round" in html and "2 epochs, KL weight 0" in html

    monkeypatch.undo()  # and off: the measure is not even taken
    out0 = tmp_path / "off"
    assert main(_treat(decoy_original, out0, "--beta", "1", "--no-control", "--escalate-below", "0")) == 0
    s0 = json.loads((out0 / "summary.json").read_text())
    assert s0["selection"]["escalation"] is None and not (out0 / "escalated").exists() and s0["runs"][0]["dir"] == "seed0"


@pytest.mark.slow
def test_sigkill_in_the_escalated_round_then_resume_equals_uninterrupted(decoy_original, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch
    from safetensors.torch import load_file

    env = {**os.environ, "MODEL_DOCTOR_QUIET": "1", "OMP_NUM_THREADS": "1"}
    # share 1: escalates wherever swaps cost the treated model anything (asserted on the full run below)
    cli = lambda out, *extra: [sys.executable, "-m", "model_doctor", *_treat(decoy_original, out, "--beta", "1",
                                                                            "--no-control", "--escalate-below", "1",
                                                                            "--escalate-epochs", "3", *extra)]
    full = tmp_path / "full"
    subprocess.run(cli(full), check=True, env=env, capture_output=True)
    assert json.loads((full / "summary.json").read_text())["selection"]["escalation"]["fired"]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "escalated" / "seed0" / "treated" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(metrics.read_text().splitlines()) < 3 and not (killed / "summary.json").exists()

    files = {p: p.read_bytes() for p in sorted(killed.rglob("*")) if p.is_file()}
    again = subprocess.run(cli(killed), env=env, capture_output=True, text=True)   # no --resume: refused, untouched
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert "an interrupted treat run (stopped in the escalated round at seed 0, arm treated, after epoch" in again.stderr
    assert "--resume" in again.stderr and "--overwrite" in again.stderr
    assert {p: p.read_bytes() for p in sorted(killed.rglob("*")) if p.is_file()} == files

    subprocess.run(cli(killed, "--resume"), check=True, env=env, capture_output=True)
    a = load_file(str(full / "escalated" / "seed0" / "treated" / "model.safetensors"))
    b = load_file(str(killed / "escalated" / "seed0" / "treated" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(metrics.read_text().splitlines()) == 3
    resumed, whole = (json.loads((d / "summary.json").read_text()) for d in (killed, full))
    assert resumed["runs"][0]["dir"] == "escalated/seed0"
    for s in (resumed, whole):  # where and how it ran, not what it computed
        s["config"].pop("out"), s["config"].pop("runtime")
    assert resumed == whole   # the same summary as the uninterrupted run


@pytest.mark.parametrize("method", ["attribution", "input", "paper"])
def test_other_space_methods_run(decoy_original, tmp_path, capsys, method):
    out = tmp_path / method
    assert main(_treat(decoy_original, out, "--beta", "1", "--space-method", method, "--no-control",
                       "--treat-noise-draws", "1")) == 0
    key = {"attribution": "loss_attribution", "input": "loss_input", "paper": "loss_space"}[method]
    rows = [json.loads(x) for x in (out / "seed0" / "treated" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0][key] > 0


def test_the_users_word_that_colour_is_a_cue_selects_and_heads_with_the_colour_matched_swap(decoy_original, tmp_path,
                                                                                              capsys):
    out = tmp_path / "cue"
    assert main(_treat(decoy_original, out, "--beta", "1", "--object-colour", "cue")) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["treat"]["object_colour"] == "cue" and s["selection"]["headline"] == "matched_swap_acc"
    assert "--object-colour cue" in s["selection"]["rule"]
    rows = [json.loads(x) for x in (out / "seed0" / "treated" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["loss_counterfactual"] > 0
    lines = [x for x in printed.splitlines() if "on held-out annotated report images" in x]
    assert "the object's colour matched" in lines[0] and "another class's background)" in lines[1]
    (head,) = [v for v in s["verdict"] if v["what"] == "background reliance"]
    # the user's figure first, then the plain and the silhouette swap (grey images: no colour-transferred one)
    assert list(head["figures"]) == ["matched_swap_acc", "swap_acc", "silhouette_swap_acc"]
    from model_doctor.report import write_report

    assert "(--object-colour cue): the colour-matched swap is the figure to read" in write_report(out).read_text()


def test_masks_that_pair_with_nothing_are_an_error(decoy_original, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["treat", "--weights", str(decoy_original), "--data", "digits", "--alpha", "0", "--beta", "1",
                 "--masks", str(empty), "--mask-format", "png", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is empty" in err and str(empty) in err


def test_bad_beta_lists(decoy_original, tmp_path, capsys):
    assert main(_treat(decoy_original, tmp_path / "d", "--beta", "1", "1")) == 2
    assert "repeats a weight" in capsys.readouterr().err
    assert main(_treat(decoy_original, tmp_path / "n", "--beta", "-1")) == 2
    assert "must be >= 0" in capsys.readouterr().err
