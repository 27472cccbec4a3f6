"""Bad input ends in one line naming the value and the fix (exit 2), never in a traceback or
running code from a data folder; outputs honour the umask; one output folder, one writer."""

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from model_doctor.cli import main
from model_doctor.io import atomic_write_bytes, lock_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("orig")
    assert main(["train", "--data", "digits", "--model", "tinycnn", "--epochs", "1", "--out", str(out)]) == 0
    return out


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_sidecar_may_not_run_code(trained, tmp_path, capsys):
    evil = tmp_path / "evil.py"
    marker = tmp_path / "ran"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\ndef build(**k):\n    raise SystemExit\n")
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((trained / "model.safetensors").read_bytes())
    (folder / "model.json").write_text(json.dumps({"model": f"file:{evil}:build", "num_classes": 10}))
    assert main(["diagnose", "--weights", str(folder / "model.safetensors"), "--out", str(tmp_path / "d")]) == 2
    err = _err(capsys)
    assert "may not run code" in err and "--model" in err and not marker.exists()


def test_broken_files_are_one_line(trained, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert main(["diagnose", "--model", "tinycnn", "--weights", str(bad), "--out", str(tmp_path / "a")]) == 2
    assert str(bad) in _err(capsys)
    side = tmp_path / "w"
    side.mkdir()
    (side / "model.safetensors").write_bytes((trained / "model.safetensors").read_bytes())
    (side / "model.json").write_text("{not json")
    assert main(["diagnose", "--weights", str(side / "model.safetensors"), "--out", str(tmp_path / "b")]) == 2
    assert "model.json" in _err(capsys)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: [unclosed\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "c")]) == 2
    assert "not valid YAML" in _err(capsys)
    cfg.write_text("train: !!python/object/apply:os.system ['touch pwned']\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "c")]) == 2
    _err(capsys)
    assert not os.path.exists("pwned")


@pytest.mark.parametrize("yaml_text,needle", [("train:\n  epochs: '5'\n", "train.epochs = '5'"),
                                               ("runtime:\n  resume: 'no'\n", "runtime.resume = 'no'"),
                                               ("treat:\n  seeds: [0, 0]\n", "distinct seeds")])
def test_config_values_are_type_checked(tmp_path, capsys, yaml_text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    assert main(["treat", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert needle in _err(capsys)


def test_zero_sizes_and_duplicate_seeds(trained, tmp_path, capsys):
    w = str(trained / "model.safetensors")
    assert main(["train", "--batch-size", "0", "--out", str(tmp_path / "a")]) == 2
    assert "batch_size=0" in _err(capsys)
    assert main(["diagnose", "--weights", w, "--image-size", "0", "--out", str(tmp_path / "b")]) == 2
    assert "image_size=0" in _err(capsys)
    assert main(["treat", "--weights", w, "--seeds", "1", "1", "--out", str(tmp_path / "c")]) == 2
    assert "distinct seeds" in _err(capsys)


def test_out_that_is_a_file_and_debug_traceback(trained, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["diagnose", "--weights", str(trained / "model.safetensors"), "--out", str(f)]) == 2
    assert "is a file" in _err(capsys)
    with pytest.raises(ValueError, match="is a file"):
        main(["diagnose", "--weights", str(trained / "model.safetensors"), "--out", str(f), "--debug"])


def test_class_count_mismatch_and_nan_weights(trained, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file, save_file

    w = str(trained / "model.safetensors")
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            d = tmp_path / "two" / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((32, 32), 40 * i, np.uint8)).save(d / f"{i}.png")
    assert main(["diagnose", "--weights", w, "--data", f"imagefolder:{tmp_path / 'two'}", "--out", str(tmp_path / "a")]) == 2
    assert "has 2 classes but the model outputs 10" in _err(capsys)
    (tmp_path / "two" / "test" / "dog").rename(tmp_path / "two" / "test" / "dgo")
    assert main(["train", "--data", f"imagefolder:{tmp_path / 'two'}", "--model", "tinycnn", "--in-channels", "1",
                 "--epochs", "1", "--out", str(tmp_path / "t2")]) == 2
    assert "differ from the training classes" in _err(capsys)
    state = load_file(w)
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    nan = tmp_path / "nan"
    nan.mkdir()
    save_file(state, str(nan / "model.safetensors"))
    (nan / "model.json").write_text((trained / "model.json").read_text())
    assert main(["diagnose", "--weights", str(nan / "model.safetensors"), "--out", str(tmp_path / "b")]) == 2
    err = _err(capsys)   # refused as it loads, naming the file
    assert "NaN or infinite values" in err and str(nan / "model.safetensors") in err


def test_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "x.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o640


def test_second_writer_gets_one_line_error(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    code = ("import sys, time; sys.path.insert(0, 'src'); from model_doctor.io import lock_folder; "
            f"lock_folder({str(out)!r}); print('locked', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"in use by process {holder.pid}"):
            lock_folder(out)
    finally:
        holder.kill()
        holder.wait()
    lock_folder(out)  # the holder is gone: its stale lock is taken over


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    base = ["train", "--data", "digits", "--model", "tinycnn", "--epochs", "1", "--out", str(out)]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--resume", "--lr", "0.5"]) == 2
    assert "train.lr: 0.01 -> 0.5" in _err(capsys)


def test_dollar_in_class_names_renders(tmp_path):
    from model_doctor.report import figures

    png = figures.heatmap(torch.rand(2, 3), ["$x_1$ cost", "a$b"], "title $ here")
    assert png[:4] == b"\x89PNG"


@pytest.mark.parametrize("shapes,needle", [
    ([{"shape_type": "circle", "points": [[1, 1], [3, 3]]}], "shape_type 'circle' is not a region"),
    ([{"shape_type": "polygon", "points": [[1, 1], [3, 3]]}], "a polygon has 2 point(s)"),
    ([{"shape_type": "polygon", "points": [[1, "a"], [3, 3], [4, 4]]}], "not [x, y] numbers"),
    ([{"shape_type": "polygon", "points": [[1, float("nan")], [3, 3], [4, 4]]}], "NaN or infinite"),
    ([{"shape_type": "rectangle", "points": [[1, 1], [1, 5]]}], "zero area"),
])
def test_labelme_shapes_are_never_dropped_silently(tmp_path, shapes, needle):
    from model_doctor.data.annotations import labelme_masks

    (tmp_path / "a.json").write_text(json.dumps({"imagePath": "a.png", "shapes": shapes}))
    with pytest.raises(ValueError, match="a.json") as err:
        labelme_masks(tmp_path)
    assert needle in str(err.value)


def test_duplicate_annotations_and_empty_box_files(tmp_path):
    from model_doctor.data.annotations import box_csv_masks, coco_masks, labelme_masks

    shape = [{"shape_type": "rectangle", "points": [[1, 1], [4, 4]]}]
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "a.json").write_text(json.dumps({"imagePath": "x.png", "shapes": shape}))
    (tmp_path / "lm" / "b.json").write_text(json.dumps({"imagePath": "x.png", "shapes": shape}))
    with pytest.raises(ValueError, match="a second LabelMe file annotates 'x.png'"):
        labelme_masks(tmp_path / "lm")
    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png"}, {"id": 2, "file_name": "x.png"}],
                                "annotations": []}))
    with pytest.raises(ValueError, match="listed under several image ids"):
        coco_masks(coco)
    for ann, needle in (({"bbox": [1, 1, 0, 5]}, r"bbox \[1, 1, 0, 5\] has no area"),
                        ({"bbox": [1, "a", 2, 2]}, "is not four numbers"),
                        ({}, "has neither a segmentation nor a bbox"),
                        ({"segmentation": [], "bbox": [0, 0, -2, 3]}, "has no area")):
        coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png"}],
                                    "annotations": [{"id": 7, "image_id": 1, **ann}]}))
        with pytest.raises(ValueError, match=needle) as err:
            coco_masks(coco)
        assert "annotation 7 of 'x.png'" in str(err.value)
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png"}],
                                "annotations": [{"id": 7, "image_id": 1, "bbox": [1, 2, 3, 2]}]}))
    mask = coco_masks(coco)["x"](6, 6)
    assert int(mask.sum()) == 6 and bool(mask[2, 1]) and not bool(mask[1, 1])  # a good box still draws
    csvf = tmp_path / "b.csv"
    csvf.write_text("image,x0,y0,x1,y1\n")
    with pytest.raises(ValueError, match="no box rows"):
        box_csv_masks(csvf)
    csvf.write_text("image,x0,y0,x1,y1\nx.png,5,5,2,8\n")
    with pytest.raises(ValueError, match="line 2: box .* has no area"):
        box_csv_masks(csvf)


def test_diagnosis_of_other_weights_or_classes(trained, tmp_path, capsys):
    w = str(trained / "model.safetensors")
    diag = tmp_path / "diag"
    assert main(["diagnose", "--weights", w, "--min-confidence", "0", "--samples-per-class", "3", "--noise-draws", "1",
                 "--allow-empty-classes", "--out", str(diag)]) == 0
    other = tmp_path / "other"
    assert main(["train", "--data", "digits", "--model", "tinycnn", "--epochs", "1", "--seed", "5", "--out", str(other)]) == 0
    capsys.readouterr()
    with pytest.warns(UserWarning, match="made for other weights"):
        assert main(["examine", "--weights", str(other / "model.safetensors"), "--diagnosis", str(diag), "--limit", "8",
                     "--out", str(tmp_path / "ex")]) == 0
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(diag / "diagnosis.safetensors"))  # as if diagnosed on a 3-class model
    save_file({k: v[:3] if v.dim() == 2 else v for k, v in tensors.items()}, str(diag / "diagnosis.safetensors"))
    assert main(["examine", "--weights", w, "--diagnosis", str(diag), "--out", str(tmp_path / "ex1")]) == 2
    err = _err(capsys)  # both counts and both files named
    assert "holds 10 class names but the correlation of" in err and "has 3 rows" in err
    assert "diagnosis.json" in err and "diagnosis.safetensors" in err
    meta = json.loads((diag / "diagnosis.json").read_text())
    meta["class_names"] = meta["class_names"][:3]
    meta["sample_indices"] = {k: v for k, v in meta["sample_indices"].items() if int(k) < 3}
    (diag / "diagnosis.json").write_text(json.dumps(meta))
    code = main(["examine", "--weights", w, "--diagnosis", str(diag), "--out", str(tmp_path / "ex2")])
    assert code == 2 and "has 3 classes but the model outputs 10" in _err(capsys)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    import numpy as np
    from PIL import Image

    from model_doctor.data.folder import MaskedImageFolder

    d = tmp_path / "train" / "a"
    d.mkdir(parents=True)
    arr = np.array([[0, 16384], [32768, 65535]], dtype=np.uint16).repeat(4, 0).repeat(4, 1)
    Image.fromarray(arr).save(d / "x.png")
    assert Image.open(d / "x.png").mode.startswith("I")
    ds = MaskedImageFolder(tmp_path / "train", None, image_size=8, in_channels=1)
    x = ds[0][0][0] * 0.5 + 0.5  # undo Normalize(0.5, 0.5) -> [0, 1]
    assert float(x.min()) == pytest.approx(0.0, abs=1e-6) and float(x.max()) == pytest.approx(1.0, abs=1e-6)
    assert float(x[0, 4]) == pytest.approx(64 / 255, abs=1 / 255) and float(x[4, 0]) == pytest.approx(128 / 255, abs=1 / 255)


def test_mask_stem_with_two_images_is_an_error(tmp_path):
    import numpy as np
    from PIL import Image

    from model_doctor.data.folder import MaskedImageFolder

    d = tmp_path / "train" / "a"
    d.mkdir(parents=True)
    for ext in ("png", "bmp"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / f"x.{ext}")
    with pytest.raises(ValueError, match="could pair with a/x.bmp and a/x.png"):
        MaskedImageFolder(tmp_path / "train", {"a/x": lambda h, w: torch.ones(h, w, dtype=torch.bool)}, in_channels=1)


def test_os_errors_are_one_line_with_a_fix():
    import errno

    from model_doctor.cli import _one_line

    assert _one_line(OSError(errno.ENOSPC, "No space left on device", "/out/model.safetensors")) == \
        "No space left on device '/out/model.safetensors'; free disk space or choose another --out"
    assert "choose a writable --out" in _one_line(OSError(errno.EROFS, "Read-only file system", "/ro"))
    assert "check the permissions" in _one_line(PermissionError(errno.EACCES, "Permission denied", "/x"))


def test_config_saved_before_the_runtime_section_is_still_read(tmp_path):
    """device, workers, precision and resume moved into ``runtime``; an older config.yaml keeps working."""
    from model_doctor.config import load_config

    old = tmp_path / "old.yaml"
    old.write_text("device: cpu\ntrain:\n  workers: 2\n  resume: true\n  precision: fp32\n"
                   "diagnose:\n  precision: bf16\nexamine:\n  precision: fp32\n")
    rt = load_config(old).runtime
    assert (rt.device, rt.workers, rt.resume, rt.precision) == ("cpu", 2, True, "bf16")  # the one not at its default
    old.write_text("train:\n  precision: bf16\ndiagnose:\n  precision: fp16\n")
    with pytest.raises(ValueError, match=r"sets precision to \['bf16', 'fp16'\]; set it once, as runtime.precision"):
        load_config(old)
    new = tmp_path / "new.yaml"
    new.write_text("runtime:\n  precision: bf16\n  workers: 0\n")
    assert (load_config(new).runtime.precision, load_config(new).runtime.workers) == ("bf16", 0)
