import collections

import pytest
import torch

from model_doctor.io import atomic_write_text, load_state_dict


class Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": Evil()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_state_dict(path)


def test_state_dict_and_checkpoint_unwrapping(tmp_path):
    sd = collections.OrderedDict(w=torch.ones(2))
    torch.save(sd, tmp_path / "a.pt")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "b.pt")
    assert torch.equal(load_state_dict(tmp_path / "a.pt")["w"], sd["w"])
    assert torch.equal(load_state_dict(tmp_path / "b.pt")["w"], sd["w"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_state_dict(tmp_path / "none.pt")


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "x")
    assert (tmp_path / "f.txt").read_text() == "x" and len(list(tmp_path.iterdir())) == 1


def test_compact_json_is_one_line_with_the_same_content(tmp_path):
    import json

    from model_doctor.io import atomic_write_json

    obj = {"per_image": {"swap_acc": [0.5, None, 1.0]}, "seed": 0}
    atomic_write_json(tmp_path / "a.json", obj)
    atomic_write_json(tmp_path / "b.json", obj, compact=True)
    a, b = (tmp_path / "a.json").read_text(), (tmp_path / "b.json").read_text()
    assert json.loads(a) == json.loads(b) == obj
    assert b.count("\n") == 1 and a.count("\n") > 5 and len(b) < len(a)


def test_json_keeps_flat_lists_on_one_line_and_round_trips(tmp_path):
    import json

    from model_doctor.io import atomic_write_json

    obj = {"per_image": {"swap_acc": [0.5, None, 1.0] * 100, "n": [], "s": "a\"]b"}, "rows": [{"a": 1}, [2, [3]]],
           "nan": float("nan"), "e": {}}
    atomic_write_json(tmp_path / "a.json", obj)
    text = (tmp_path / "a.json").read_text()
    back = json.loads(text)
    nan = back.pop("nan")
    assert nan != nan and back == {k: v for k, v in obj.items() if k != "nan"}
    line = next(x for x in text.splitlines() if '"swap_acc"' in x)
    assert line.strip() == '"swap_acc": ' + json.dumps([0.5, None, 1.0] * 100) + ","
    assert text.count("\n") < 20
