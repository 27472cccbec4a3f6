"""E7's selection after the fact, against naive references: each rule picks a (candidate, epoch)
from validation records alone, and the chosen epoch's test accuracy is read per group."""

import json

import torch

from benchmarks import e7_methods as M


def _row(epoch: int, val: str, test: str = "1100", rule: float = 0.0) -> dict:
    return {"epoch": epoch, "val_hits": val, "test_hits": test, "rule_score": rule}


def test_worst_group_on_a_budget_matches_a_loop():
    g = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    row = _row(1, "10111101")
    keep = torch.tensor([0, 2, 4, 7])
    ref = {}
    for i in keep.tolist():
        ref.setdefault(int(g[i]), []).append(row["val_hits"][i] == "1")
    worst = min(sum(v) / len(v) for v in ref.values())
    average = sum(sum(v) for v in ref.values()) / len(keep)
    assert abs(M.worst_on(g, keep)(row) - (worst + 1e-3 * average)) < 1e-12
    assert abs(M.worst_on(g)(row) - (0.5 + 1e-3 * 6 / 8)) < 1e-12   # groups 0 and 3 at 1/2


def test_pick_takes_the_best_score_and_on_ties_the_first_candidate_and_epoch():
    runs = {"a": [_row(1, "0011"), _row(2, "0111"), _row(3, "0111")], "b": [_row(1, "0111"), _row(2, "1111")]}
    assert M.pick(runs, M.by_average) == ("b", runs["b"][1])
    runs["b"].pop()
    assert M.pick(runs, M.by_average) == ("a", runs["a"][1])   # 3 of 4 at a's epoch 2, a's epoch 3 and b's epoch 1
    runs["b"][0]["rule_score"] = 2.0
    assert M.pick(runs, M.by_rule)[0] == "b"


def test_records_keep_the_last_row_of_a_repeated_epoch_and_skip_rows_without_hits(tmp_path):
    rows = [{"epoch": 1, "loss_ce": 1.0}, _row(1, "00"), _row(2, "01"), _row(1, "11")]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [(r["epoch"], r["val_hits"]) for r in M.records(tmp_path)] == [(1, "11"), (2, "01")]


def test_test_groups_reads_the_chosen_epochs_test_hits_per_group():
    g = torch.tensor([0, 1, 0, 1, 1])
    out = M.test_groups(_row(1, "1", test="10110"), g, ["x", "y"])
    assert out["per_group"] == {"x": 1.0, "y": 1 / 3} and out["worst"] == 1 / 3 and out["average"] == 3 / 5
    assert out["sizes"] == {"x": 2, "y": 3}


def test_candidate_names_are_short_and_every_method_has_as_many():
    assert M.cand_name({"lr": 0.01, "weight_decay": 5e-4}) == "lr0.01-wd0.0005"
    assert {len(c) for c in M.CANDIDATES.values()} == {4}
