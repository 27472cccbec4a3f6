"""The report: every section, offline, images decode in headless Chromium, user strings escaped."""

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from model_doctor.cli import main
from model_doctor.report import SECTIONS, write_report


def _chromium() -> str:
    """Debian's chromium, which `.ci/run` installs; a test never installs system packages itself."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium is not installed (`.ci/run` installs Debian's chromium; apt-get install chromium)")
    return path


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--proxy-server=127.0.0.1:9", "--virtual-time-budget=5000"]


@pytest.mark.slow
def test_report_in_headless_chromium(demo_run, tmp_path):
    chromium = _chromium()
    page = demo_run[0] / "report.html"
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing to fetch
    for img in re.findall(r'src="data:image/png;base64,([^"]+)"', html):
        Image.open(io.BytesIO(base64.b64decode(img))).verify()
    probe = tmp_path / "probe.html"  # mark each image with its decoded width once loaded
    probe.write_text(html.replace("</body>", "<script>window.addEventListener('load',()=>{document.querySelectorAll"
                                  "('img').forEach(i=>i.setAttribute('data-w',i.naturalWidth));document.body.setAttribute("
                                  "'data-res',JSON.stringify(performance.getEntriesByType('resource').map(e=>e.name)))});"
                                  "</script></body>"))
    # every connection goes to a dead proxy (so nothing could leave the machine anyway); the page's own
    # resource list must be empty: it fetched nothing, not even a local file
    dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'u1'}", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    for sid in SECTIONS:
        assert f'id="{sid}"' in dom, sid
    widths = re.findall(r'data-w="(\d+)"', dom)
    assert widths and all(int(w) > 0 for w in widths) and len(widths) == html.count("<img")
    res = re.search(r'data-res="([^"]*)"', dom)
    assert res and json.loads(res.group(1).replace("&quot;", '"')) == []
    # negative control: the same probe does see a remote fetch
    leaky = tmp_path / "leaky.html"
    leaky.write_text(probe.read_text().replace("<body>", '<body><img src="http://192.0.2.1/x.png">', 1))
    dom2 = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'u3'}", "--dump-dom", leaky.as_uri()],
                          capture_output=True, text=True, timeout=120).stdout
    res2 = re.search(r'data-res="([^"]*)"', dom2)
    assert res2 and "192.0.2.1" in res2.group(1)
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'u2'}", "--window-size=1200,4000",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert Image.open(shot).size[0] > 0


def test_class_names_are_escaped(tmp_path):
    root = tmp_path / "ds" / "train"
    evil = "<img src=x onerror=alert(1)>"
    for cls in (evil, "plain"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            arr = np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    (tmp_path / "ds" / "test").symlink_to(root)
    out = tmp_path / "run"
    data = ["--data", f"imagefolder:{tmp_path / 'ds'}", "--in-channels", "3", "--image-size", "16"]
    assert main(["train", "--model", "tinycnn", *data, "--epochs", "1", "--out", str(out / "orig")]) == 0
    assert main(["diagnose", "--weights", str(out / "orig" / "model.safetensors"), *data, "--min-confidence", "0",
                 "--samples-per-class", "2", "--noise-draws", "1", "--allow-empty-classes", "--out", str(out / "diag")]) == 0
    # the literal tag from the issue, as another tool might name a class
    meta = json.loads((out / "diag" / "diagnosis.json").read_text())
    meta["class_names"][1] = "<script>alert(1)</script>"
    (out / "diag" / "diagnosis.json").write_text(json.dumps(meta))
    html = write_report(out).read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_layer_depth_view_from_several_treated_runs(tmp_path):
    for i, layer in enumerate(["features.0", "features.4", "features.8"]):
        d = tmp_path / f"treat_{i}"
        d.mkdir()
        arm = {"test_acc": 0.9 + 0.01 * i, "per_class": [0.9, 0.9], "test_acc_std": 0.0}
        (d / "summary.json").write_text(json.dumps({
            "original": {"test_acc": 0.9, "per_class": [0.9, 0.9]}, "treated": arm, "control": arm,
            "runs": [], "classes": ["a", "b"], "config": {"treat": {"layers": layer}}}))
    html = write_report(tmp_path).read_text()
    depth = html.split('id="depth"')[1].split("</section>")[0]
    assert "data:image/png;base64" in depth and "features.0, features.4, features.8" in depth


def test_verdict_comes_first_with_formatted_numbers(tmp_path):
    d = tmp_path / "treat"
    d.mkdir()
    rel = {"swap_acc": {"mean": 0.8123456789, "std": 0.0123456}, "bg_grad_share": {"mean": 0.1, "std": 0.01}}
    arm = {"test_acc": 0.912345678901, "test_acc_std": 0.004, "per_class": [0.9, 0.9], "background_reliance": rel}
    run = {"treated": {"per_class": [0.9, 0.9]}, "control": {"per_class": [0.9, 0.9]}}
    (d / "summary.json").write_text(json.dumps({
        "original": {"test_acc": 0.9, "per_class": [0.9, 0.9],
                     "background_reliance": {"swap_acc": 0.5, "bg_grad_share": 0.3, "images": 4}},
        "treated": arm, "control": {**arm, "test_acc": 0.85},
        "delta_treated_minus_control": {"mean": 0.062345678, "std": 0.01},
        "verdict": [{"text": "test accuracy: treated − control +6.2 ± 1.0 pts (3 seeds); better than the control beyond seed noise"}],
        "selection": {"space_method": "counterfactual", "weights": [0.3, 1.0], "chosen_beta": {"0": 1.0},
                      "rule": "mean of validation and held-out swap accuracy"},
        "masks": {"held_out": 50}, "runs": [run, run, run], "classes": ["a", "b"], "config": {}}))
    html = write_report(tmp_path).read_text()
    assert html.index('id="verdict"') < html.index('id="correlation"')
    verdict = html.split('id="verdict"')[1].split("</section>")[0]
    assert "better than the control beyond seed noise" in verdict and "counterfactual" in verdict
    assert "81.23 ± 1.23 %" in verdict and "50.00 %" in verdict
    assert "over the 4 images (Wilson)" in verdict and "15–85 %" in verdict  # 0.5 on 4 images: 15-85 %
    treatment = html.split('id="treatment"')[1].split("</section>")[0]
    assert "91.23 ± 0.40 %" in treatment and "+6.23 ± 1.00 pts" in treatment
    assert not re.search(r"\d\.\d{5,}", verdict + treatment)  # no long floats
