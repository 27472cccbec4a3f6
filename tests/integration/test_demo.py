import json

import pytest

from model_doctor.demo import run_demo


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    res = run_demo(str(tmp_path / "demo"), epochs=20, treat_epochs=1, shortcut_epochs=3, shortcut_treat_epochs=1,
                   shortcut_seeds=(0,))
    summary = json.loads((tmp_path / "demo" / "treat" / "summary.json").read_text())
    for arm in ("original", "treated", "control"):
        assert 0.0 <= summary[arm]["test_acc"] <= 1.0
    assert res["train"]["test_acc"] > 0.5  # a real, trained classifier
    assert (tmp_path / "demo" / "diagnosis" / "diagnosis.safetensors").is_file()
    assert (tmp_path / "demo" / "examine" / "examination.json").is_file()
    short = json.loads((tmp_path / "demo" / "shortcut" / "treat" / "summary.json").read_text())
    assert short["selection"]["space_method"] == "counterfactual" and short["masks"]["held_out"] == 50
    assert "background_reliance" in short["treated"] and short["verdict"]
