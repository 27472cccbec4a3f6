"""Bad input, as a new user would give it, in every group: images, masks (PNG, LabelMe, COCO,
boxes), configs, weights, diagnoses, CLI options, outputs, numerics.

Each case builds its input at test time (small and fast) and asserts what the project promises:
exit code 2, exactly one line on stderr that names the offending file or value (``needle``), and
no traceback. A case whose documented behaviour is a counted skip asserts the count instead
(``test_counted_skips``).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_doctor.cli import main

S = 12   # image side of the tiny ImageFolder


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def _folder(root: Path, n: int = 6) -> Path:
    """``root/{train,test}/{a,b}/NN.png``: grey 12 px images, class a bright on the left, b on the right."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, cls in enumerate(("a", "b")):
            for i in range(n):
                img = rng.integers(0, 60, (S, S))
                img[:, (0 if c == 0 else S // 2):(S // 2 if c == 0 else S)] += 150
                _png(root / split / cls / f"{i:02d}.png", img)
    return root


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A digits model and its diagnosis; a tiny ImageFolder, a model trained on it, and box masks."""
    base = tmp_path_factory.mktemp("bad-inputs")
    digits = base / "digits"
    assert main(["train", "--data", "digits", "--model", "tinycnn", "--epochs", "1", "--out", str(digits)]) == 0
    diag = base / "diag"
    assert main(["diagnose", "--weights", str(digits / "model.safetensors"), "--samples-per-class", "3",
                 "--min-confidence", "0", "--noise-draws", "1", "--allow-empty-classes", "--out", str(diag)]) == 0
    folder = _folder(base / "folder")
    fmodel = base / "fmodel"
    assert main(["train", "--data", f"imagefolder:{folder}", "--model", "tinycnn", "--epochs", "1", "--image-size", str(S),
                 "--out", str(fmodel)]) == 0
    return {"w": str(digits / "model.safetensors"), "diag": diag, "folder": folder,
            "fw": str(fmodel / "model.safetensors")}


def _run(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code}; stderr: {err}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# --- builders: (ctx, tmp) -> argv; each case pairs one with the text its error line must hold ---------------

Build = Callable[[dict, Path], list[str]]


def cli(*args: str) -> Build:
    return lambda c, t: [a.replace("{w}", c["w"]).replace("{fw}", c["fw"]).replace("{diag}", str(c["diag"]))
                         .replace("{folder}", str(c["folder"])).replace("{tmp}", str(t)) for a in args] + \
        ([] if "--out" in args or args[0] in ("layers", "report") else ["--out", str(t / "out")])


OPTIONS = [
    ("train-batch-0", cli("train", "--batch-size", "0"), "batch_size=0"),
    ("train-epochs-0", cli("train", "--epochs", "0"), "epochs=0"),
    ("train-lr-0", cli("train", "--lr", "0"), "train.lr=0"),
    ("train-lr-neg", cli("train", "--lr", "-1"), "train.lr=-1"),
    ("train-lr-nan", cli("train", "--lr", "nan"), "train.lr=nan"),
    ("train-lr-inf", cli("train", "--lr", "inf"), "train.lr=inf"),
    ("val-fraction-0", cli("train", "--val-fraction", "0"), "val_fraction=0"),
    ("val-fraction-1", cli("train", "--val-fraction", "1"), "val_fraction=1"),
    ("val-fraction-big", cli("train", "--val-fraction", "1.5"), "val_fraction=1.5"),
    ("image-size-0", cli("train", "--image-size", "0"), "image_size=0"),
    ("in-channels-0", cli("train", "--in-channels", "0"), "in_channels=0"),
    ("num-classes-0", cli("train", "--num-classes", "0"), "num_classes=0"),
    ("workers-neg", cli("train", "--workers", "-1"), "workers=-1"),
    ("weight-decay-neg", cli("train", "--config", "{tmp}/c.yaml"), "weight_decay=-1"),
    ("unknown-model", cli("train", "--model", "nosuchnet"), "nosuchnet"),
    ("unknown-data", cli("train", "--data", "nosuchdata"), "nosuchdata"),
    ("device-cuda", cli("train", "--device", "cuda"), "cuda"),
    ("device-tpu", cli("train", "--device", "tpu"), "tpu"),
    ("theta-5", cli("diagnose", "--weights", "{w}", "--theta", "5"), "theta=5"),
    ("confidence-big", cli("diagnose", "--weights", "{w}", "--min-confidence", "1.5"), "min_confidence=1.5"),
    ("confidence-neg", cli("diagnose", "--weights", "{w}", "--min-confidence", "-0.1"), "min_confidence=-0.1"),
    ("noise-neg", cli("diagnose", "--weights", "{w}", "--noise", "-1"), "noise=-1"),
    ("noise-draws-neg", cli("diagnose", "--weights", "{w}", "--noise-draws", "-1"), "noise_draws=-1"),
    ("samples-per-class-0", cli("diagnose", "--weights", "{w}", "--samples-per-class", "0"), "samples_per_class=0"),
    ("diag-batch-0", cli("diagnose", "--weights", "{w}", "--batch-size", "0"), "batch_size=0"),
    ("layers-linear", cli("diagnose", "--weights", "{w}", "--layers", "classifier"), "classifier"),
    ("layers-unknown", cli("diagnose", "--weights", "{w}", "--layers", "nosuchlayer"), "nosuchlayer"),
    ("layers-auto-0", cli("diagnose", "--weights", "{w}", "--layers", "auto:0"), "auto:0"),
    ("no-weights-diagnose", cli("diagnose"), "--weights"),
    ("examine-limit-neg", cli("examine", "--weights", "{w}", "--diagnosis", "{diag}", "--limit", "-1"), "limit=-1"),
    ("examine-limit-0", cli("examine", "--weights", "{w}", "--diagnosis", "{diag}", "--limit", "0"), "limit=0"),
    ("examine-top-k-0", cli("examine", "--weights", "{w}", "--diagnosis", "{diag}", "--top-k", "0"), "top_k=0"),
    ("examine-no-diagnosis", cli("examine", "--weights", "{w}"), "--diagnosis"),
    ("examine-no-weights", cli("examine", "--diagnosis", "{diag}"), "--weights"),
    ("treat-no-weights", cli("treat"), "--weights"),
    ("treat-holdout-1", cli("treat", "--weights", "{w}", "--holdout", "1"), "holdout=1"),
    ("treat-holdout-neg", cli("treat", "--weights", "{w}", "--holdout", "-0.1"), "holdout=-0.1"),
    ("treat-every-0", cli("treat", "--weights", "{w}", "--every", "0"), "every=0"),
    ("treat-pool-batch-0", cli("treat", "--weights", "{w}", "--pool-batch", "0"), "pool_batch=0"),
    ("treat-alpha-neg", cli("treat", "--weights", "{w}", "--alpha", "-1"), "alpha=-1"),
    ("treat-beta-neg", cli("treat", "--weights", "{w}", "--beta", "-1"), "beta="),
    ("treat-beta-repeat", cli("treat", "--weights", "{w}", "--beta", "1", "1"), "repeats a weight"),
    ("treat-rrr-neg", cli("treat", "--weights", "{w}", "--rrr", "-1"), "rrr=-1"),
    ("treat-v-2", cli("treat", "--weights", "{w}", "--v", "2"), "treat.v=2"),
    ("treat-seeds-dup", cli("treat", "--weights", "{w}", "--seeds", "1", "1"), "distinct seeds"),
    ("treat-warmup-neg", cli("treat", "--weights", "{w}", "--warmup-steps", "-1"), "warmup_steps=-1"),
    ("treat-epochs-0", cli("treat", "--weights", "{w}", "--epochs", "0"), "epochs=0"),
    ("treat-batch-0", cli("treat", "--weights", "{w}", "--treat-batch-size", "0"), "batch_size=0"),
    ("treat-lr-0", cli("treat", "--weights", "{w}", "--lr", "0"), "treat.lr=0"),
    ("treat-noise-draws-neg", cli("treat", "--weights", "{w}", "--treat-noise-draws", "-1"), "noise_draws=-1"),
    ("treat-noise-neg", cli("treat", "--weights", "{w}", "--treat-noise", "-0.5"), "noise=-0.5"),
    ("treat-annotated-0", cli("treat", "--weights", "{w}", "--annotated-per-class", "0"), "annotated_per_class=0"),
    ("treat-nothing", cli("treat", "--weights", "{w}", "--alpha", "0"), "nothing to treat"),
    ("treat-beta-no-masks", cli("treat", "--weights", "{w}", "--alpha", "0", "--beta", "1"), "--masks"),
    ("select-per-class-0", cli("select", "--weights", "{w}", "--per-class", "0"), "per_class=0"),
    ("select-no-weights", cli("select"), "--weights"),
    ("layers-size-1", cli("layers", "smallcnn", "--image-size", "1"), "1x1"),
    ("layers-size-0", cli("layers", "smallcnn", "--image-size", "0"), "--image-size 0"),
    ("layers-cmd-unknown", cli("layers", "nosuchnet"), "nosuchnet"),
    ("analyze-no-out", lambda c, t: ["analyze", "robustness", "--weights", c["w"]], "--out"),
]

CONFIGS = [  # (id, YAML text, needle); run as `train --config FILE`
    ("not-yaml", "train: [unclosed\n", "not valid YAML"),
    ("top-level-list", "- 1\n- 2\n", "mapping"),
    ("unknown-section", "trian:\n  epochs: 2\n", "trian"),
    ("unknown-key", "train:\n  epoch: 2\n", "epoch"),
    ("epochs-string", "train:\n  epochs: '5'\n", "train.epochs = '5'"),
    ("resume-string", "runtime:\n  resume: 'no'\n", "runtime.resume = 'no'"),
    ("seeds-dup", "treat:\n  seeds: [0, 0]\n", "distinct seeds"),
    ("seeds-empty", "treat:\n  seeds: []\n", "seeds=[]"),
    ("theta-5", "diagnose:\n  theta: 5\n", "theta=5"),
    ("python-tag", "train: !!python/object/apply:os.system ['true']\n", "YAML"),
    ("refine-magic", "treat:\n  refine: magic\n", "refine='magic'"),
    ("tail-bn-magic", "treat:\n  tail_bn: magic\n", "tail_bn='magic'"),
    ("partners-same", "treat:\n  partners: same\n", "partners='same'"),
    ("kl-weight-neg", "treat:\n  kl_weight: -1\n", "kl_weight=-1"),
    ("min-val-share-2", "treat:\n  min_val_share: 2\n", "min_val_share=2"),
    ("precision-fp16", "train:\n  precision: fp16\n", "fp16"),
    ("precision-fp64", "train:\n  precision: fp64\n", "fp64"),
    ("lr-nan", "train:\n  lr: .nan\n", "lr=nan"),
    ("holdout-2", "treat:\n  holdout: 2\n", "holdout=2"),
    ("momentum-neg", "train:\n  momentum: -1\n", "momentum=-1"),
    ("v-neg", "treat:\n  v: -0.5\n", "v=-0.5"),
    ("estimate-in-treat", "diagnose:\n  estimate: true\n", "estimate"),
    ("samples-zero", "diagnose:\n  samples_per_class: 0\n", "samples_per_class=0"),
]


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _weights_case(kind: str) -> Build:
    def build(c: dict, t: Path) -> list[str]:
        w = t / "w" / "model.safetensors"
        good = Path(c["w"]).read_bytes()
        extra: list[str] = []
        if kind == "missing":
            w = t / "nope.safetensors"
        elif kind == "garbage":
            _write(w, b"not a safetensors file")
        elif kind == "truncated":
            _write(w, good[: len(good) // 2])
        elif kind == "directory":
            w = t / "wdir"
            w.mkdir()
        elif kind == "pt-garbage":
            w = _write(t / "w.pt", b"\x80\x04garbage")
        elif kind == "pt-pickle-code":
            class Evil:
                def __reduce__(self):
                    return (print, ("pwned",))
            w = _write(t / "w.pt", pickle.dumps(Evil()))
        elif kind == "sidecar-json":
            _write(w, good)
            _write(w.with_name("model.json"), "{not json")
        elif kind == "sidecar-code":
            _write(w, good)
            _write(w.with_name("model.json"), json.dumps({"model": "file:evil.py:build", "num_classes": 10}))
        elif kind == "num-classes":
            w, extra = Path(c["w"]), ["--num-classes", "2"]
        elif kind == "in-channels":
            w, extra = Path(c["w"]), ["--in-channels", "3"]
        elif kind == "other-model":
            w, extra = Path(c["w"]), ["--model", "smallcnn"]
        return ["diagnose", "--weights", str(w), *extra, "--out", str(t / "out")]
    return build


WEIGHTS = [("weights-" + k, _weights_case(k), n) for k, n in (
    ("missing", "nope.safetensors"), ("garbage", "model.safetensors"), ("truncated", "model.safetensors"),
    ("directory", "wdir"), ("pt-garbage", "w.pt"), ("pt-pickle-code", "w.pt"), ("sidecar-json", "model.json"),
    ("sidecar-code", "may not run code"), ("num-classes", "[10] in the file"), ("in-channels", "input channels"),
    ("other-model", "smallcnn"))]


def _diag_case(kind: str) -> Build:
    def build(c: dict, t: Path) -> list[str]:
        import shutil

        from safetensors.torch import load_file, save_file

        d = t / "diag"
        if kind == "missing":
            d = t / "nodiag"
        elif kind == "empty":
            d.mkdir()
        else:
            shutil.copytree(c["diag"], d)
            meta = json.loads((d / "diagnosis.json").read_text())
            tensors = load_file(str(d / "diagnosis.safetensors"))
            key = next(k for k in tensors if k.startswith("correlation/"))
            if kind == "json":
                (d / "diagnosis.json").write_text("{truncated")
            elif kind == "format":
                meta["format"] = "other/9"
            elif kind == "keys":
                meta.pop("class_names")
            elif kind in ("nan", "negative", "rows"):
                tensors = {**tensors, key: {"nan": tensors[key].clone().fill_(float("nan")),
                                            "negative": -tensors[key].abs() - 1, "rows": tensors[key][:3]}[kind]}
                save_file(tensors, str(d / "diagnosis.safetensors"))
            elif kind == "truncated":
                raw = (d / "diagnosis.safetensors").read_bytes()
                (d / "diagnosis.safetensors").write_bytes(raw[: len(raw) // 2])
            if kind in ("format", "keys"):
                (d / "diagnosis.json").write_text(json.dumps(meta))
        return ["examine", "--weights", c["w"], "--diagnosis", str(d), "--out", str(t / "out")]
    return build


DIAGNOSES = [("diagnosis-" + k, _diag_case(k), n) for k, n in (
    ("missing", "nodiag"), ("empty", "diag"), ("json", "diagnosis.json"), ("format", "other/9"),
    ("keys", "class_names"), ("nan", "NaN"), ("negative", "negative"), ("rows", "class names"),
    ("truncated", "diagnosis.safetensors"))]


def _image_case(kind: str) -> Build:
    def build(c: dict, t: Path) -> list[str]:
        import shutil

        root = t / "imgs"
        if kind != "missing":
            shutil.copytree(c["folder"], root)
        if kind == "no-train":
            shutil.rmtree(root / "train")
        elif kind == "loose-image":
            _png(root / "train" / "loose.png", np.zeros((S, S)))
        elif kind == "empty-class":
            (root / "train" / "c").mkdir()
        elif kind == "garbage":
            _write(root / "train" / "a" / "broken.png", b"not an image")
        elif kind == "truncated":
            raw = (root / "train" / "a" / "00.png").read_bytes()
            _write(root / "train" / "a" / "00.png", raw[: len(raw) // 3])
        elif kind == "no-class":
            shutil.rmtree(root / "train")
            (root / "train").mkdir()
        elif kind == "twins":
            _png(root / "train" / "a" / "00.jpg", np.zeros((S, S)))
            _png(t / "m" / "a" / "00.png", np.full((S, S), 255))
            return ["treat", "--weights", c["fw"], "--data", f"imagefolder:{root}", "--masks", str(t / "m"),
                    "--mask-format", "png", "--alpha", "0", "--beta", "1", "--out", str(t / "out")]
        return ["treat", "--weights", c["fw"], "--data", f"imagefolder:{root}", "--out", str(t / "out")]
    return build


IMAGES = [("images-" + k, _image_case(k), n) for k, n in (
    ("missing", "imgs"), ("no-train", "train"), ("loose-image", "loose.png"), ("empty-class", "train/c"),
    ("garbage", "broken.png"), ("truncated", "00.png"), ("no-class", "no class folders"), ("twins", "a/00"))]


def _mask_case(fmt: str, kind: str) -> Build:
    """A treat run on the tiny ImageFolder whose masks are broken in one way."""
    def build(c: dict, t: Path) -> list[str]:
        m = t / "masks"
        src = m
        full = np.zeros((S, S))
        full[2:9, 2:9] = 255
        if fmt == "png":
            if kind == "missing":
                m = src = t / "nomasks"
            elif kind == "empty":
                m.mkdir()
            elif kind == "jpg":
                for i in range(3):
                    Image.fromarray(full.astype(np.uint8)).save(_write(m / "a" / f"{i:02d}.jpg", b"") )
            elif kind == "size":
                _png(m / "a" / "00.png", np.full((S + 3, S), 255))
            elif kind == "all-zero":
                _png(m / "a" / "00.png", np.zeros((S, S)))
            elif kind == "orphan":
                _png(m / "a" / "99.png", full)
            elif kind == "garbage":
                _write(m / "a" / "00.png", b"not a png")
            elif kind == "file":
                src = _write(t / "masks.png", b"x")
        elif fmt == "labelme":
            img = "00.png"
            _png(m / "a" / "00.png", np.full((S, S), 90))   # the annotated copy, as `model-doctor select` writes it
            shape = {"label": "obj", "shape_type": "polygon", "points": [[1, 1], [8, 1], [8, 8]]}
            doc = {"shapes": [shape], "imagePath": img, "imageHeight": S, "imageWidth": S}
            if kind == "json":
                _write(m / "a" / "00.json", "{not json")
            elif kind == "type":
                shape["shape_type"] = "point"
            elif kind == "two-points":
                shape["points"] = [[1, 1], [5, 5]]
            elif kind == "nan":
                shape["points"] = [[1, 1], [float("nan"), 3], [5, 5]]
            elif kind == "zero-rect":
                shape.update(shape_type="rectangle", points=[[2, 2], [2, 7]])
            elif kind == "not-numbers":
                shape["points"] = [["a", 1], [2, 2], [3, 3]]
            elif kind == "outside-root":
                doc["imagePath"] = "../../../elsewhere.png"
            elif kind == "outside-image":
                shape["points"] = [[1, 1], [80, 1], [8, 8]]
            if kind == "only-png":
                (m / "a" / "00.png").unlink()
                _png(m / "a" / "00.png", full)
            if kind not in ("json", "only-png"):
                _write(m / "a" / "00.json", json.dumps(doc))
        elif fmt == "coco":
            src = t / "coco.json"
            ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}
            doc = {"images": [{"id": 1, "file_name": "a/00.png", "height": S, "width": S}], "annotations": [ann],
                   "categories": [{"id": 1, "name": "obj"}]}
            if kind == "json":
                _write(src, "{not json")
            else:
                if kind == "no-area":
                    ann["bbox"] = [1, 1, 0, 5]
                elif kind == "non-numeric":
                    ann["bbox"] = ["x", 1, 2, 2]
                elif kind == "nothing":
                    ann.pop("bbox")
                elif kind == "unknown-image":
                    ann["image_id"] = 7
                elif kind == "no-images":
                    doc.pop("images")
                _write(src, json.dumps(doc))
        else:  # boxes CSV
            src = t / "boxes.csv"
            rows = {"header": "img,a,b,c,d\na/00.png,1,1,5,5\n", "non-numeric": "image,x0,y0,x1,y1\na/00.png,x,1,5,5\n",
                    "zero-area": "image,x0,y0,x1,y1\na/00.png,1,1,1,5\n", "header-only": "image,x0,y0,x1,y1\n",
                    "outside": "image,x0,y0,x1,y1\na/00.png,1,1,50,5\n"}
            if kind == "folder":
                src.mkdir()
            else:
                _write(src, rows[kind])
        import shutil

        if not (t / "imgs").exists():
            shutil.copytree(c["folder"], t / "imgs")
        return ["treat", "--weights", c["fw"], "--data", f"imagefolder:{t / 'imgs'}", "--masks", str(src),
                "--mask-format", fmt, "--alpha", "0", "--beta", "1", "--out", str(t / "out")]
    return build


MASKS = [(f"masks-{f}-{k}", _mask_case(f, k), n) for f, k, n in (
    ("png", "missing", "nomasks"), ("png", "empty", "is empty"), ("png", "jpg", "0 of 3 files"),
    ("png", "size", "00.png"), ("png", "all-zero", "no foreground pixel"), ("png", "orphan", "a/99"),
    ("png", "garbage", "00.png"), ("png", "file", "masks.png"),
    ("labelme", "json", "00.json"), ("labelme", "type", "point"), ("labelme", "two-points", "00.json"),
    ("labelme", "nan", "NaN"), ("labelme", "zero-rect", "zero area"), ("labelme", "not-numbers", "not [x, y] numbers"),
    ("labelme", "outside-root", "elsewhere.png"), ("labelme", "outside-image", "outside"), ("labelme", "only-png", "*.json"),
    ("coco", "json", "coco.json"), ("coco", "no-area", "no area"), ("coco", "non-numeric", "four numbers"),
    ("coco", "nothing", "neither a segmentation nor a bbox"), ("coco", "unknown-image", "image id 7"),
    ("coco", "no-images", "images"),
    ("boxes", "header", "image,x0,y0,x1,y1"), ("boxes", "non-numeric", "line 2"), ("boxes", "zero-area", "no area"),
    ("boxes", "header-only", "no box rows"), ("boxes", "outside", "outside"), ("boxes", "folder", "boxes.csv"))]


def _output_case(kind: str) -> Build:
    def build(c: dict, t: Path) -> list[str]:
        if kind == "file":
            _write(t / "out", "x")
            return ["diagnose", "--weights", c["w"], "--out", str(t / "out")]
        if kind == "none":
            return ["diagnose", "--weights", c["w"]]
        if kind == "parent-is-file":
            _write(t / "f", "x")
            return ["diagnose", "--weights", c["w"], "--out", str(t / "f" / "out")]
        if kind == "report-missing":
            return ["report", str(t / "nothing")]
        if kind == "report-empty":
            (t / "empty").mkdir()
            return ["report", str(t / "empty")]
        if kind == "report-summary":
            _write(t / "run" / "summary.json", '{"treated": {"test_acc": 0.')
            return ["report", str(t / "run")]
        if kind == "report-metrics":
            _write(t / "run" / "config.yaml", "train: {}\n")
            _write(t / "run" / "original" / "metrics.jsonl", '{"epoch": 1, "val_acc"')
            return ["report", str(t / "run")]
        if kind == "report-keys":
            _write(t / "run" / "summary.json", json.dumps({"treated": {}}))
            return ["report", str(t / "run")]
        raise AssertionError(kind)
    return build


OUTPUTS = [("outputs-" + k, _output_case(k), n) for k, n in (
    ("file", "is a file"), ("none", "--out"), ("parent-is-file", "/f"), ("report-missing", "nothing"),
    ("report-empty", "no model-doctor artifacts"), ("report-summary", "summary.json"),
    ("report-metrics", "metrics.jsonl"), ("report-keys", "lacks 'original'"))]

NUMERICS = [
    # treat --lr 1e9 writes its results and exits 3 (a diverged arm): tests/integration/test_run_folder.py
    ("numerics-train-lr-1e9", cli("train", "--model", "tinycnn", "--lr", "1e9", "--epochs", "1"), "learning rate 1e+09"),
    ("numerics-image-size-huge", cli("layers", "tinycnn", "--image-size", "-5"), "--image-size -5"),
]

CASES = OPTIONS + [(f"config-{i}", None, n) for i, _, n in CONFIGS] + WEIGHTS + DIAGNOSES + IMAGES + MASKS + OUTPUTS + NUMERICS
_YAML = {f"config-{i}": text for i, text, _ in CONFIGS}


def test_at_least_120_cases():
    assert len(CASES) >= 120, len(CASES)
    assert len({c[0] for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case_id,build,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(ctx, tmp_path, capsys, case_id, build, needle):
    if case_id in _YAML:
        _write(tmp_path / "c.yaml", _YAML[case_id])
        argv = ["treat" if "treat" in _YAML[case_id] or "diagnose" in _YAML[case_id] else "train", "--weights", ctx["w"],
                "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")]
    else:
        if case_id == "weight-decay-neg":
            _write(tmp_path / "c.yaml", "train:\n  weight_decay: -1\n")
        argv = build(ctx, tmp_path)
    err = _run(argv, capsys)
    assert needle in err, f"{needle!r} not in: {err}"


def test_later_commands_use_the_trained_size_and_colour(tmp_path, capsys):
    """Trained at 20 px on colour images without saying so: train follows the images (3 channels),
    and a later command without --image-size sees the images at 20 px; a different size warns."""
    root = tmp_path / "rgb"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, colour in enumerate(([200, 30, 30], [30, 30, 200])):
            for i in range(6):
                img = np.clip(np.array(colour)[None, None] + rng.integers(0, 40, (20, 20, 3)), 0, 255)
                _png(root / split / f"c{c}" / f"{i}.png", img)
    out = tmp_path / "m"
    assert main(["train", "--data", f"imagefolder:{root}", "--model", "tinycnn", "--epochs", "1", "--image-size", "20",
                 "--out", str(out)]) == 0
    assert "training with 3 input channels" in capsys.readouterr().out
    meta = json.loads((out / "model.json").read_text())
    assert meta["in_channels"] == 3 and meta["image_size"] == 20
    from model_doctor.config import Config
    from model_doctor.runtime import load_data, load_model

    cfg = Config()
    cfg.data.name, cfg.model.weights = f"imagefolder:{root}", str(out / "model.safetensors")
    _, m = load_model(cfg)
    assert cfg.data.image_size == 20 and tuple(load_data(cfg, "train", m["in_channels"])[0][0].shape) == (3, 20, 20)
    cfg = Config()
    cfg.data.name, cfg.model.weights, cfg.data.image_size = f"imagefolder:{root}", str(out / "model.safetensors"), 32
    with pytest.warns(UserWarning, match="--image-size 32 differs from the 20 px the model was trained at"):
        load_model(cfg)
