"""``model_doctor.treat``: one library call on in-memory data with boxes; its result, the save / load
round trip, and the verdict lines."""

import pytest
import torch
from torch.utils.data import TensorDataset

from model_doctor import TreatResult, treat
from model_doctor.models import build_model
from model_doctor.training import FitConfig, fit


def _shortcut_data(n: int, seed: int, shortcut: bool):
    """3 classes: a bright square (the object) whose position says the class; with ``shortcut`` a
    class-coded stripe along the top edge (the background) says it too. Boxes cover the square."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.1 * torch.randn(n, 1, 16, 16, generator=g)
    boxes = {}
    for i in range(n):
        r = 4 + 3 * int(y[i])
        x[i, 0, r:r + 3, 6:9] += 1.0
        boxes[i] = torch.zeros(16, 16, dtype=torch.bool)
        boxes[i][r - 1:r + 4, 5:10] = True
        stripe = int(y[i]) if shortcut else int(torch.randint(0, 3, (1,), generator=g))
        x[i, 0, 0, 5 * stripe:5 * stripe + 5] += 2.0
    return TensorDataset(x, y), boxes


@pytest.fixture(scope="module")
def original():
    train, _ = _shortcut_data(240, 0, shortcut=True)
    torch.manual_seed(0)
    model = build_model("tinycnn", in_channels=1, num_classes=3, image_size=16)
    fit(model, train, _shortcut_data(60, 1, shortcut=True)[0], FitConfig(epochs=4, lr=0.05, batch_size=32), 3)
    return model


def test_treat_returns_a_result_that_saves_and_loads(original, tmp_path):
    train, boxes = _shortcut_data(240, 0, shortcut=True)
    test, _ = _shortcut_data(90, 2, shortcut=False)
    annotated = {i: boxes[i] for i in range(60)}   # 20 boxes per class
    before = {k: v.clone() for k, v in original.state_dict().items()}
    lines: list[str] = []
    result = treat(original, train, test, out=tmp_path / "run", masks=annotated, alpha=0.0, beta=[1.0, 3.0],
                   seeds=[0, 1], epochs=2, lr=0.05, refine="none", log=lines.append)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())  # the original is left alone
    s = result.summary
    assert [r["seed"] for r in s.runs] == [0, 1] and set(result.chosen["chosen_beta"].values()) <= {1.0, 3.0}
    assert 0 < s.masks["train"] and 0 < s.masks["held_out"] and s.masks["train"] + s.masks["held_out"] <= 60  # those in validation unused
    assert s.control is not None
    assert 0.0 <= s.treated.test_acc <= 1.0 and s.treated.background_reliance is not None
    assert result.verdict[0].startswith("test accuracy: treated − control") and not result.diverged
    assert all(f"verdict: {v}" in lines for v in result.verdict)   # printed as returned
    treated = result.model(0)
    assert isinstance(treated, torch.nn.Module) and not torch.equal(
        treated.state_dict()["features.0.weight"], original.state_dict()["features.0.weight"])

    loaded = TreatResult.load(tmp_path / "run")
    assert loaded.to_dict() == result.to_dict() and loaded.verdict == result.verdict
    again = loaded.model(0, like=original)   # from disk into a copy of the architecture
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), treated.state_dict().values()))
    copy = loaded.save(tmp_path / "copy")
    assert TreatResult.load(copy).to_dict() == result.to_dict()
    assert TreatResult.load(copy).model(1, "control", like=original) is not None

    with pytest.raises(ValueError, match="already holds a finished treat run"):   # the folder is not overwritten
        treat(original, train, test, out=tmp_path / "run", masks=annotated, alpha=0.0, beta=1.0, log=lines.append)
    with pytest.raises(ValueError, match="unknown config key treat.'alhpa'"):
        treat(original, train, test, out=tmp_path / "x", alhpa=1.0)
