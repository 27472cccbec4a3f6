"""The annotation workflow round trip, and the decoy benchmark's shortcut."""

import csv
import json

import pytest
import torch

from model_doctor.cli import main
from model_doctor.data.decoy import DecoyConfig, make_decoy


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    out = tmp_path_factory.mktemp("orig")
    assert main(["train", "--data", "digits", "--model", "tinycnn", "--epochs", "3", "--out", str(out)]) == 0
    return out / "model.safetensors"


def test_select_then_annotate_then_treat(original, tmp_path):
    sel = tmp_path / "sel"
    assert main(["select", "--weights", str(original), "--low-confidence", "--per-class", "2", "--out", str(sel)]) == 0
    rows = list(csv.DictReader(open(sel / "index.csv")))
    assert len(rows) == 20 and {r["label"] for r in rows} == {str(c) for c in range(10)}
    first = rows[0]
    stub = sel / first["file"].replace(".png", ".json")
    assert (sel / first["file"]).is_file() and json.loads(stub.read_text())["shapes"] == []
    # an annotator draws one rectangle in LabelMe
    data = json.loads(stub.read_text())
    data["shapes"] = [{"shape_type": "rectangle", "points": [[8, 4], [24, 28]], "label": "object"}]
    stub.write_text(json.dumps(data))
    out = tmp_path / "treat"
    assert main(["treat", "--weights", str(original), "--layers", "features.8", "--samples-per-class", "5",
                 "--min-confidence", "0.0", "--allow-empty-classes", "--alpha", "0", "--beta", "1",
                 "--space-method", "paper", "--masks", str(sel), "--expand", "1", "--treat-noise-draws", "1", "--epochs", "1", "--no-control",
                 "--out", str(out)]) == 0
    rows_m = [json.loads(line) for line in (out / "seed0" / "treated" / "metrics.jsonl").read_text().splitlines()]
    assert rows_m[0]["loss_space"] > 0  # the one annotated image produced a space-wise penalty


def test_decoy_is_deterministic_and_masks_exclude_the_decoy():
    a = make_decoy(DecoyConfig(seed=3))
    b = make_decoy(DecoyConfig(seed=3))
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, make_decoy(DecoyConfig(seed=4)).images)
    for i in range(20):
        fg = a.foreground(i)[0].bool()
        y0, x0, p = (int(v) for v in a.decoy_boxes[i])
        assert not fg[y0:y0 + p, x0:x0 + p].any()
    test = make_decoy(DecoyConfig(split="test"))
    shade = lambda d, i: int(d.images[i, 0, d.decoy_boxes[i][0], d.decoy_boxes[i][1]])
    same = sum(shade(test, i) == shade(a, int(torch.nonzero(a.targets == test.targets[i])[0])) for i in range(200))
    assert same < 60  # test shades are random, not the class's


@pytest.mark.slow
def test_decoy_shortcut_is_real(tmp_path):
    from model_doctor.models import SmallCNN
    from model_doctor.training import FitConfig, evaluate, fit, split_train_val

    train = make_decoy(DecoyConfig(split="train"))
    test = make_decoy(DecoyConfig(split="test"))
    torch.manual_seed(0)
    model = SmallCNN(1, 10, width=16)
    tr, va = split_train_val(train, 0.1, 0)
    fit(model, tr, va, FitConfig(epochs=6, lr=0.05, batch_size=32), 10)
    in_dist = evaluate(model, va, 10)["acc"]
    shuffled = evaluate(model, test, 10)["acc"]
    print(f"decoy-digits: validation (decoy as in training) {in_dist:.3f}, decoy-shuffled test {shuffled:.3f}")
    assert in_dist > 0.9 and shuffled < in_dist - 0.2
