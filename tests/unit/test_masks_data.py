"""Masks from every format, pairing by path, joint transforms, and bad inputs."""

import json
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from model_doctor.data.annotations import box_csv_masks, coco_masks, labelme_masks, load_masks, png_masks
from model_doctor.data.folder import MaskedImageFolder, joint_transform
from model_doctor.data.masks import expand_foreground, scaled_expansion


def _img(path, w=10, h=8, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "ds" / "train"
    for cls in ("cat", "dog"):
        for i in range(3):
            _img(root / cls / f"{i}.png", value=40 * i + 10)
    return root


def expected(h, w, rows, cols):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def test_labelme_polygon_and_rectangle(tree):
    (tree / "cat" / "0.json").write_text(json.dumps({
        "imagePath": "0.png", "imageHeight": 8, "imageWidth": 10,
        "shapes": [{"shape_type": "rectangle", "points": [[1, 2], [4, 5]]},
                   {"shape_type": "polygon", "points": [[6, 1], [9, 1], [9, 3], [6, 3]]}]}))
    masks = labelme_masks(tree)
    m = masks["cat/0"](8, 10)
    ref = expected(8, 10, (2, 5), (1, 4))
    ref[1:4, 6:10] = True  # PIL fills polygons inclusive of their edge pixels
    assert torch.equal(m, ref)


def test_coco_polygon_and_box(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "cat/1.png", "height": 8, "width": 10}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 3, 2]},
                        {"id": 2, "image_id": 1, "segmentation": [[5, 4, 8, 4, 8, 6, 5, 6]]}]}))
    m = coco_masks(path)["cat/1"](8, 10)
    ref = expected(8, 10, (0, 2), (0, 3))
    ref[4:7, 5:9] = True
    assert torch.equal(m, ref)


def test_png_and_box_csv(tmp_path):
    (tmp_path / "m" / "dog").mkdir(parents=True)
    arr = np.zeros((8, 10), np.uint8)
    arr[3:6, 2:7] = 200
    Image.fromarray(arr).save(tmp_path / "m" / "dog" / "2.png")
    assert torch.equal(png_masks(tmp_path / "m")["dog/2"](8, 10), expected(8, 10, (3, 6), (2, 7)))
    csvp = tmp_path / "boxes.csv"
    csvp.write_text("image,x0,y0,x1,y1\ncat/0.png,1,1,3,4\ncat/0.png,8,6,10,8\n")
    ref = expected(8, 10, (1, 4), (1, 3))
    ref[6:8, 8:10] = True
    assert torch.equal(box_csv_masks(csvp)["cat/0"](8, 10), ref)


def test_masks_paired_by_path_not_order(tree, tmp_path, monkeypatch):
    csvp = tmp_path / "b.csv"
    csvp.write_text("image,x0,y0,x1,y1\ndog/1.png,0,0,2,2\ncat/2.png,5,5,7,7\n")
    masks = box_csv_masks(csvp)
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: list(reversed(real(p))))  # a different listing order
    a = MaskedImageFolder(tree, masks, image_size=10, transform=joint_transform(10, 3))
    monkeypatch.setattr(os, "listdir", real)
    b = MaskedImageFolder(tree, dict(reversed(list(masks.items()))), image_size=10, transform=joint_transform(10, 3))
    for ds in (a, b):
        paired = {ds.samples[i][0]: ds[i][3] for i in range(len(ds))}
        assert paired["dog/1.png"] and paired["cat/2.png"] and sum(paired.values()) == 2
        i = [s[0] for s in ds.samples].index("dog/1.png")
        assert ds.classes == ["cat", "dog"] and ds.samples[i][1] == 1


def test_joint_crop_flip_keeps_alignment(tmp_path):
    root = tmp_path / "train"
    arr = np.zeros((16, 16), np.uint8)
    arr[2:7, 3:12] = 255
    (root / "a").mkdir(parents=True)
    Image.fromarray(arr).convert("RGB").save(root / "a" / "x.png")
    masks = {"a/x": lambda h, w: torch.from_numpy(arr > 0)}
    ds = MaskedImageFolder(root, masks, image_size=16, in_channels=1,
                           transform=joint_transform(16, 1, train=True, crop_padding=4))
    for seed in range(10):
        torch.manual_seed(seed)
        random.seed(seed)
        x, _, m, has = ds[0]
        assert has and torch.equal((x[0] > 0), m[0].bool())  # the image is its own mask


def test_expansion_scaling():
    assert scaled_expansion(30, 28) == 4 and scaled_expansion(30, 224) == 30
    m = torch.zeros(9, 9, dtype=torch.bool)
    m[4, 4] = True
    assert expand_foreground(m, 2).sum() == 25 and expand_foreground(expand_foreground(m, 2), -2).sum() == 1


def test_bad_inputs(tmp_path, tree):
    # unreadable image: clear error by default, counted skip when asked
    (tree / "cat" / "bad.png").write_bytes(b"not an image")
    ds = MaskedImageFolder(tree, image_size=8)
    bad = [s[0] for s in ds.samples].index("cat/bad.png")
    with pytest.raises(ValueError, match=r"cannot read image .*bad\.png"):
        ds[bad]
    skip = MaskedImageFolder(tree, image_size=8, on_error="skip")
    assert skip.skipped["unreadable image"] == ["cat/bad.png"] and "1 unreadable image" in skip.skip_report()
    (tree / "cat" / "bad.png").unlink()
    # image without a label folder
    _img(tree / "stray.png")
    with pytest.raises(ValueError, match=r"stray\.png' is not inside a class folder"):
        MaskedImageFolder(tree)
    (tree / "stray.png").unlink()
    # empty class folder
    (tree / "eel").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*eel' holds no image"):
        MaskedImageFolder(tree)
    (tree / "eel").rmdir()
    # mask without image
    with pytest.raises(ValueError, match=r"mask for 'cat/9' has no image"):
        MaskedImageFolder(tree, {"cat/9": lambda h, w: torch.ones(h, w, dtype=torch.bool)})
    # mask of the wrong size
    ds = MaskedImageFolder(tree, {"cat/1": lambda h, w: torch.ones(3, 3, dtype=torch.bool)}, image_size=8)
    i = [s[0] for s in ds.samples].index("cat/1.png")
    with pytest.raises(ValueError, match=r"mask for .*1\.png' is \(3, 3\) but the image is \(8, 10\)"):
        ds[i]
    # LabelMe imagePath outside the dataset root
    (tree / "cat" / "esc.json").write_text(json.dumps({"imagePath": "../../../outside.png", "shapes": []}))
    with pytest.raises(ValueError, match="points outside the dataset root"):
        labelme_masks(tree)
    (tree / "cat" / "esc.json").unlink()
    # polygon partly outside the image
    (tree / "cat" / "0.json").write_text(json.dumps({"imagePath": "0.png", "shapes": [
        {"shape_type": "polygon", "points": [[-3, 0], [5, 0], [5, 5]]}]}))
    with pytest.raises(ValueError, match=r"0\.json: a shape lies partly outside the 10x8 image"):
        labelme_masks(tree)["cat/0"](8, 10)
    # non-UTF-8 file name
    bad_name = os.fsdecode(b"cat/\xff.png")
    _img(tree / bad_name)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        MaskedImageFolder(tree)
    os.unlink(tree / bad_name)
    with pytest.raises(ValueError, match="mask format 'xml'"):
        load_masks("xml", tree)
