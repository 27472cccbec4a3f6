import json
import re

import pytest


@pytest.mark.slow
def test_demo_end_to_end(demo_run):
    root, res = demo_run  # shared with the report test (tests/conftest.py)
    summary = json.loads((root / "treat" / "summary.json").read_text())
    for arm in ("original", "treated", "control"):
        assert 0.0 <= summary[arm]["test_acc"] <= 1.0
    assert res["train"]["test_acc"] > 0.5  # a real, trained classifier
    assert (root / "diagnosis" / "diagnosis.safetensors").is_file()
    assert (root / "examine" / "examination.json").is_file()
    short = json.loads((root / "shortcut" / "treat" / "summary.json").read_text())
    assert short["selection"]["space_method"] == "counterfactual" and short["masks"]["held_out"] == 50
    assert "background_reliance" in short["treated"] and short["verdict"]
    for said in (summary["verdict"], short["verdict"]):   # a verdict a person reads in ten seconds
        assert len(said) <= 6, [v["text"] for v in said]
        assert all(v["beyond_noise"] or "beyond noise" not in v["text"] for v in said)
    (head,) = [v for v in short["verdict"] if v.get("what") == "background reliance"]
    images = int(re.search(r"on (\d+) held-out annotated images", head["text"]).group(1))
    rest_on = [v for v in short["verdict"] if v.get("what") == "size"]
    assert bool(rest_on) == (images <= 20)   # a caution only where it applies
