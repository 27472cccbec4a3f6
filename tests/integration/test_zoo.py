"""Every paper architecture at 32x32, 1 channel: forward, diagnose, one treatment step."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_bn
from torch.utils.data import TensorDataset

from model_doctor import diagnose
from model_doctor.cli import main
from model_doctor.hooks import count_hooks
from model_doctor.models import PAPER_MODELS, build_model, default_layers
from model_doctor.treatment import ModelDoctorLoss

HEAVY = {"wideresnet28_10", "densenet121", "alexnet", "vgg16_bn", "inceptionv3", "efficientnetv2_s", "xception"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in PAPER_MODELS + ["wrn10_1", "resnet18"]])
def test_paper_architecture(name):
    torch.manual_seed(0)
    model = randomize_bn(build_model(name, in_channels=1, num_classes=4, image_size=32))  # no zero-init BN gammas
    x = torch.randn(2, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 4)
    y = logits.argmax(1)
    layer = default_layers(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diag = diagnose(model, TensorDataset(x, y), layers=layer, num_classes=4, samples_per_class=2,
                        min_confidence=0.0, noise_draws=1, batch_size=2, allow_empty_classes=True)
    corr = diag.correlation(diag.layers[0])
    assert torch.isfinite(corr).all() and corr.sum() > 0
    assert count_hooks(model) == 0

    model.train()
    loss = ModelDoctorLoss(diag, alpha=1.0, noise_draws=1)
    with loss.attach(model):
        out = model(x[:2])
        terms = loss(out, y[:2], (x[:2], y[:2]), 0)
        ce = F.cross_entropy(out, y[:2])
        assert torch.isfinite(ce) and torch.isfinite(terms["channel"])
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(terms["channel"], params, retain_graph=True, allow_unused=True)
        reached = [g for g in grads if g is not None and g.abs().sum() > 0]
        assert reached and all(torch.isfinite(g).all() for g in reached)  # the constraint trains parameters
        (ce + terms["channel"]).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert count_hooks(model) == 0 and "forward" not in vars(model)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_layers_command(name, capsys):
    assert main(["layers", name, "--in-channels", "1"]) == 0
    out = capsys.readouterr().out
    assert "<- default" in out and default_layers(name) in out or default_layers(name) == "auto"


def test_user_file_model_end_to_end(tmp_path):
    src = tmp_path / "mynet.py"
    src.write_text(
        "import torch.nn as nn\n"
        "def build(in_channels, num_classes):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),\n"
        "                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(8, num_classes))\n")
    out = tmp_path / "run"
    spec = f"file:{src}:build"
    assert main(["train", "--model", spec, "--data", "digits", "--epochs", "1", "--out", str(out / "orig")]) == 0
    # model.json names the file: model, but code runs only when the user names it (--model)
    assert main(["diagnose", "--weights", str(out / "orig" / "model.safetensors"), "--out", str(out / "refused")]) == 2
    assert main(["diagnose", "--model", spec, "--weights", str(out / "orig" / "model.safetensors"), "--min-confidence", "0.0",
                 "--samples-per-class", "3", "--noise-draws", "1", "--allow-empty-classes", "--out", str(out / "diag")]) == 0
    assert main(["treat", "--model", spec, "--weights", str(out / "orig" / "model.safetensors"), "--diagnosis", str(out / "diag"),
                 "--epochs", "1", "--treat-noise-draws", "1", "--out", str(out / "treat")]) == 0
    assert (out / "treat" / "summary.json").is_file()
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        build_model(f"file:{src}:nope")


def test_init_starts_a_new_task_from_a_pretrained_backbone(tmp_path, capsys):
    """``train --init``: the backbone comes from the file, the classifier for the new class count
    starts fresh and is named; a file that fits nothing, or --init with --weights, is refused."""
    from safetensors.torch import save_file

    from model_doctor.config import Config
    from model_doctor.runtime import load_model

    backbone = build_model("tinycnn", in_channels=1, num_classes=10, image_size=8)
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(tmp_path / "pre.safetensors"))
    cfg = Config()
    cfg.model.name, cfg.model.init, cfg.model.num_classes, cfg.model.in_channels = "tinycnn", str(tmp_path / "pre.safetensors"), 3, 1
    cfg.data.image_size, cfg.runtime.device = 8, "cpu"
    model, meta = load_model(cfg)
    own, pre = model.state_dict(), backbone.state_dict()
    fresh = [k for k in own if own[k].shape != pre[k].shape]
    assert fresh and sorted(meta["init"]["fresh"]) == sorted(fresh) and meta["init"]["taken"] == len(own) - len(fresh)
    assert all(torch.equal(own[k], pre[k]) for k in own if k not in fresh)
    cfg.model.weights = str(tmp_path / "pre.safetensors")
    with pytest.raises(ValueError, match="cannot go with --weights"):
        load_model(cfg)
    cfg.model.weights = None
    save_file({"nothing.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    cfg.model.init = str(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="--init .*missing.safetensors' is not a file"):
        load_model(cfg)
    cfg.model.init = str(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="none of its tensors fits model 'tinycnn'"):
        load_model(cfg)
    assert main(["train", "--data", "digits", "--model", "tinycnn", "--init", str(tmp_path / "pre.safetensors"),
                 "--epochs", "1", "--out", str(tmp_path / "t")]) == 0
    assert "--init:" in capsys.readouterr().out


def test_weights_without_model_json_give_their_channels_and_classes(tmp_path):
    """A checkpoint from another script (no model.json beside it) loads with the channel and class
    counts its own tensors say, not 1 channel and 10 classes; flags still win, and a wrong flag
    gets the error that names them."""
    from safetensors.torch import save_file

    from model_doctor.config import Config
    from model_doctor.runtime import load_model
    from model_doctor.weights import shape_hints

    trained = build_model("tinycnn", in_channels=3, num_classes=2, image_size=8)
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert shape_hints(trained.state_dict()) == {"in_channels": 3, "num_classes": 2}
    cfg = Config()
    cfg.model.name, cfg.model.weights, cfg.runtime.device = "tinycnn", str(tmp_path / "w.safetensors"), "cpu"
    model, meta = load_model(cfg)
    assert (meta["in_channels"], meta["num_classes"]) == (3, 2)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in model.state_dict().items())
    cfg.model.num_classes = 5
    with pytest.raises(ValueError, match="pass the --num-classes"):
        load_model(cfg)
