import json

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
