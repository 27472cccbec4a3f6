"""Coarse foreground annotations -> binary masks, keyed by the image's path relative to the
dataset split root (``"cat/001.jpg"``). Pairing is always by that path, never by position.

Formats: PNG masks (any non-zero pixel = foreground), LabelMe JSON (every polygon and rectangle;
several shapes per image), COCO instances JSON (polygons, RLE via ``pycocotools`` if installed,
boxes), and a boxes CSV (``image,x0,y0,x1,y1`` in pixels, several rows per image).

A mask is produced lazily by ``fn(height, width) -> bool [H, W]`` so that box-only formats can
be drawn at the image's own size, and every size check names the file at fault.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = ["MaskFn", "png_masks", "labelme_masks", "coco_masks", "box_csv_masks", "load_masks", "MASK_FORMATS"]

MaskFn = Callable[[int, int], torch.Tensor]
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _draw(height: int, width: int, polygons: list[list[tuple[float, float]]], boxes: list[tuple[float, float, float, float]],
          where: str, allow_outside: bool = False) -> torch.Tensor:
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    for poly in polygons:
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        if not allow_outside and (min(xs) < 0 or min(ys) < 0 or max(xs) > width or max(ys) > height):
            raise ValueError(f"{where}: a shape lies partly outside the {width}x{height} image; fix the annotation "
                             "(or allow clipping with allow_outside=True)")
        if len(poly) >= 3:
            draw.polygon([(float(x), float(y)) for x, y in poly], fill=1)
    for x0, y0, x1, y1 in boxes:
        if not allow_outside and (min(x0, x1) < 0 or min(y0, y1) < 0 or max(x0, x1) > width or max(y0, y1) > height):
            raise ValueError(f"{where}: a box lies partly outside the {width}x{height} image; fix the annotation")
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1) - 1, max(y0, y1) - 1], fill=1)
    return torch.from_numpy(np.array(img, dtype=np.uint8) > 0)


def _no_files(root: Path, ext: str, fix: str) -> None:
    """Raise: no ``*ext`` file under ``root``, saying whether the folder is empty or what it holds."""
    files = [p for p in root.rglob("*") if p.is_file()]
    if not files:
        raise ValueError(f"--masks folder {str(root)!r} is empty; put the annotations there (e.g. from `model-doctor select`)")
    exts: dict[str, int] = {}
    for p in files:
        exts[p.suffix.lower() or "(none)"] = exts.get(p.suffix.lower() or "(none)", 0) + 1
    held = ", ".join(f"{n} {e}" for e, n in sorted(exts.items(), key=lambda kv: -kv[1])[:4])
    raise ValueError(f"0 of {len(files)} files under {str(root)!r} match *{ext} (found {held}); {fix}")


def _files(root: Path, ext: str, layout: str, fix: str) -> list[Path]:
    """Every ``*ext`` file under the ``--masks`` folder ``root``, or a one-line error naming the fix."""
    if not root.is_dir():
        raise ValueError(f"--masks {str(root)!r} is not a folder; {layout}")
    found = sorted(root.rglob(f"*{ext}"))
    if not found:
        _no_files(root, ext, fix)
    return found


def png_masks(folder: str | Path) -> dict[str, MaskFn]:
    """``folder/<relpath stem>.png`` masks; the key is the mask's relative path without extension,
    matched to images whatever their extension."""
    root = Path(folder)
    found = _files(root, ".png", "png masks are read from a folder of <class>/<file>.png",
                   "save the masks as PNG (non-zero = foreground) or pass the matching --mask-format")
    out: dict[str, MaskFn] = {}
    for p in found:
        def fn(h: int, w: int, p: Path = p) -> torch.Tensor:
            try:
                arr = np.array(Image.open(p))
            except Exception as exc:
                raise ValueError(f"cannot read mask {str(p)!r} ({type(exc).__name__}); re-export it as a PNG") from None
            if arr.ndim == 3:
                arr = arr.max(axis=2)
            if arr.shape != (h, w):
                raise ValueError(f"mask {str(p)!r} is {arr.shape[1]}x{arr.shape[0]} but its image is {w}x{h}; "
                                 "masks must have their image's size")
            if not (arr != 0).any():
                raise ValueError(f"mask {str(p)!r} has no foreground pixel (all zero); draw the object in it or delete it")
            return torch.from_numpy(arr != 0)
        out[_rel(p, root)[: -len(p.suffix)]] = fn
    return out


def _points(pts: object, where: str) -> list[tuple[float, float]]:
    """LabelMe points as finite floats, or an error naming the file (never a silently dropped shape)."""
    import math

    try:
        out = [(float(p[0]), float(p[1])) for p in pts]  # type: ignore[attr-defined]  # JSON of any shape; caught below
    except (TypeError, ValueError, IndexError, KeyError):
        raise ValueError(f"{where}: a shape has points that are not [x, y] numbers ({str(pts)[:80]}); fix the "
                         "annotation in LabelMe") from None
    if any(not (math.isfinite(x) and math.isfinite(y)) for x, y in out):
        raise ValueError(f"{where}: a shape has a NaN or infinite coordinate; fix the annotation in LabelMe")
    return out


def labelme_masks(folder: str | Path, dataset_root: str | Path | None = None, allow_outside: bool = False) -> dict[str, MaskFn]:
    """Every ``*.json`` LabelMe file under ``folder``; its ``imagePath`` (relative to the JSON) names
    the image, which must lie inside ``dataset_root`` (default: ``folder``)."""
    root = Path(folder).resolve()
    base = Path(dataset_root).resolve() if dataset_root else root
    found = _files(root, ".json", "LabelMe annotations are read from a folder of *.json",
                   "annotate with LabelMe (one JSON beside each image) or pass the matching --mask-format")
    out: dict[str, MaskFn] = {}
    for jp in found:
        try:
            data = json.loads(jp.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{str(jp)!r} is not valid LabelMe JSON ({type(exc).__name__}); re-save it from LabelMe") from None
        if "shapes" not in data or "imagePath" not in data:
            continue  # not a LabelMe file (e.g. an index)
        img = (jp.parent / data["imagePath"]).resolve()
        try:
            rel = img.relative_to(base).as_posix()
        except ValueError:
            raise ValueError(f"{str(jp)!r}: imagePath {data['imagePath']!r} points outside the dataset root "
                             f"{str(base)!r}; keep annotations next to their images") from None
        polys, boxes = [], []
        where = str(jp)
        for shape in data["shapes"]:
            kind = shape.get("shape_type") or "polygon"
            pts = _points(shape.get("points") or [], where)
            if kind == "rectangle":
                if len(pts) != 2:
                    raise ValueError(f"{where}: a rectangle needs 2 points, got {len(pts)}; fix the annotation")
                boxes.append((pts[0][0], pts[0][1], pts[1][0], pts[1][1]))
                if boxes[-1][0] == boxes[-1][2] or boxes[-1][1] == boxes[-1][3]:
                    raise ValueError(f"{where}: a rectangle has zero area {pts}; redraw it")
            elif kind == "polygon":
                if len(pts) < 3:
                    raise ValueError(f"{where}: a polygon has {len(pts)} point(s); a region needs at least 3")
                polys.append(pts)
            else:
                raise ValueError(f"{where}: shape_type {kind!r} is not a region; use polygon or rectangle shapes "
                                 "for foreground masks")
        if not polys and not boxes:
            continue  # an empty stub (not annotated yet) is no mask, not an all-background mask
        stem = rel.rsplit(".", 1)[0]
        if stem in out:
            raise ValueError(f"{where}: a second LabelMe file annotates {rel!r}; keep one annotation file per image")
        size = (data.get("imageHeight"), data.get("imageWidth"))

        def fn(h: int, w: int, polys=polys, boxes=boxes, jp=jp, size=size) -> torch.Tensor:
            if size[0] and size[1] and (size[0], size[1]) != (h, w):
                raise ValueError(f"{str(jp)!r} was drawn on a {size[1]}x{size[0]} image but the image is {w}x{h}")
            return _draw(h, w, polys, boxes, str(jp), allow_outside)
        out[stem] = fn
    return out


def coco_masks(path: str | Path, allow_outside: bool = False) -> dict[str, MaskFn]:
    """COCO instances JSON: the union of every annotation of an image (polygons, RLE, or its box)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ValueError(f"{str(path)!r} has no 'images' list; export COCO instances JSON (images with ids and "
                             "file_name, annotations with image_id)")
        images = {im["id"]: im for im in data["images"]}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"{str(path)!r} is not a COCO instances JSON ({type(exc).__name__}: {exc}); export it again "
                         "(images with ids, annotations with image_id)") from None
    names = [str(im.get("file_name")) for im in images.values()]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{str(path)!r}: file_name {dup[0]!r} is listed under several image ids; list each image once")
    anns: dict[int, list[dict]] = {}
    for a in data.get("annotations", []):
        if a["image_id"] not in images:
            raise ValueError(f"{str(path)!r}: annotation {a.get('id')} refers to missing image id {a['image_id']}; "
                             "list that image under 'images' or remove the annotation")
        _check_coco_shape(a, f"{str(path)!r}: annotation {a.get('id')} of {images[a['image_id']].get('file_name')!r}")
        anns.setdefault(a["image_id"], []).append(a)
    out: dict[str, MaskFn] = {}
    for iid, items in anns.items():
        im = images[iid]

        def fn(h: int, w: int, items=items, im=im) -> torch.Tensor:
            if (im.get("height"), im.get("width")) not in ((h, w), (None, None)):
                raise ValueError(f"{str(path)!r}: image {im['file_name']!r} is listed as {im['width']}x{im['height']} but is {w}x{h}")
            mask = torch.zeros(h, w, dtype=torch.bool)
            for a in items:
                seg = a.get("segmentation")
                if isinstance(seg, list) and seg:
                    polys = [list(zip(s[0::2], s[1::2])) for s in seg]
                    mask |= _draw(h, w, polys, [], f"{path}: {im['file_name']}", allow_outside)
                elif isinstance(seg, dict):
                    try:
                        from pycocotools import mask as mask_utils
                    except ImportError:
                        raise ValueError(f"{str(path)!r} holds RLE masks; pip install pycocotools to read them") from None
                    rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg.get("counts"), list) else seg
                    mask |= torch.from_numpy(mask_utils.decode(rle).astype(bool))
                else:  # a box (checked when loading)
                    x, y, bw, bh = (float(v) for v in a["bbox"])
                    mask |= _draw(h, w, [], [(x, y, x + bw, y + bh)], f"{path}: {im['file_name']}", allow_outside)
            return mask
        out[str(im["file_name"]).rsplit(".", 1)[0]] = fn
    return out


def _check_coco_shape(a: dict, where: str) -> None:
    """An annotation must draw something: a polygon list, an RLE, or a box with positive area."""
    seg = a.get("segmentation")
    if (isinstance(seg, list) and seg) or isinstance(seg, dict):
        return
    box = a.get("bbox")
    if box is None:
        raise ValueError(f"{where} has neither a segmentation nor a bbox; export it again with one of them")
    try:
        x, y, bw, bh = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: bbox {box!r} is not four numbers [x, y, width, height]; fix the annotation") from None
    if not all(np.isfinite((x, y, bw, bh))) or bw <= 0 or bh <= 0:
        raise ValueError(f"{where}: bbox {box!r} has no area (needs width > 0 and height > 0); redraw it")


def box_csv_masks(path: str | Path, allow_outside: bool = False) -> dict[str, MaskFn]:
    """CSV with header ``image,x0,y0,x1,y1`` (pixels, x1/y1 exclusive); rows of an image are united."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"image", "x0", "y0", "x1", "y1"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise ValueError(f"{str(path)!r} needs the columns image,x0,y0,x1,y1 (got {reader.fieldnames})")
        rows_seen = 0
        for i, row in enumerate(reader, start=2):
            try:
                box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
            except (TypeError, ValueError):
                raise ValueError(f"{str(path)!r} line {i}: box values must be numbers, got {row}") from None
            if not all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"{str(path)!r} line {i}: box {box} has no area (needs x1 > x0 and y1 > y0); fix the row")
            boxes.setdefault(row["image"].rsplit(".", 1)[0], []).append(box)  # type: ignore[arg-type]  # csv rows are str-keyed; checked above
            rows_seen += 1
    if not rows_seen:
        raise ValueError(f"{str(path)!r} has a header but no box rows; add one row per box (image,x0,y0,x1,y1)")
    return {k: _box_fn(b, f"{path}: {k}", allow_outside) for k, b in boxes.items()}


def _box_fn(boxes: list, where: str, allow_outside: bool) -> MaskFn:
    return lambda h, w: _draw(h, w, [], boxes, where, allow_outside)


MASK_FORMATS: dict[str, Callable[..., dict[str, MaskFn]]] = {"png": png_masks, "labelme": labelme_masks, "coco": coco_masks, "boxes": box_csv_masks}


def load_masks(fmt: str, source: str | Path, dataset_root: str | Path | None = None) -> dict[str, MaskFn]:
    """Masks keyed by image path relative to the split root, without extension."""
    if fmt not in MASK_FORMATS:
        raise ValueError(f"mask format {fmt!r}; use one of {', '.join(MASK_FORMATS)}")
    if not Path(source).exists():
        raise ValueError(f"mask source {str(source)!r} does not exist; check --masks")
    if fmt == "labelme":
        return labelme_masks(source, dataset_root)
    return MASK_FORMATS[fmt](source)
