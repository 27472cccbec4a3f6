"""One study protocol: ``run_study`` equals the fits composed by hand, and ``treat`` and
``reproduce`` equal that protocol written out naively (the code before ``model_doctor.study``)."""

import copy
import json

import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from model_doctor.config import Config
from model_doctor.jobs import run_treat
from model_doctor.study import ArmSpec, run_study
from model_doctor.training import FitConfig, evaluate, fit


def _toy(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long() + (x[:, 0, 4:].mean((1, 2)) > 0).long()
    return TensorDataset(x, y)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))


def test_run_study_equals_fits_by_hand_and_chooses_by_the_selection_score(tmp_path):
    data, val = _toy(96, 0), _toy(48, 1)
    original = _net()
    cfg = FitConfig(epochs=2, lr=0.1, batch_size=16, seed=3)
    half = Subset(data, range(48))
    select = lambda m: {"select_score": evaluate(m, val, 3)["acc"]}
    arms = [ArmSpec("control"), ArmSpec("a", train=half, group="treated", weight=1.0),
            ArmSpec("b", group="treated", weight=2.0)]
    study = run_study(original, data, val, arms, cfg, 3, tmp_path / "s", select=select)
    for name, train in (("control", data), ("a", half), ("b", data)):
        ref = copy.deepcopy(original)
        res = fit(ref, train, val, cfg, 3, select=select)
        got = study.arms[name]
        for k, v in ref.state_dict().items():
            assert torch.equal(v, got.model.state_dict()[k]), (name, k)
        assert got.result["best_epoch"] == res.best_epoch and got.score == res.best_row["select_score"]
    scores = study.scores("treated")
    assert study.chosen["treated"] == max(sorted(scores), key=scores.get)
    assert study.arm("treated") is study.arms[study.chosen["treated"]]
    again = run_study(original, data, val, arms, cfg, 3, tmp_path / "s", select=select)
    assert all(r.cached for r in again.arms.values())
    assert all(torch.equal(again.arms["b"].model.state_dict()[k], v) for k, v in study.arms["b"].model.state_dict().items())
    fresh = run_study(original, data, val, arms[:1], cfg, 3, tmp_path / "s", select=select, resume=False)
    assert not fresh.arms["control"].cached
    with pytest.raises(ValueError, match="repeat"):
        run_study(original, data, val, [ArmSpec("x"), ArmSpec("x")], cfg, 3, tmp_path / "t")


@pytest.fixture(scope="module")
def decoy_original(tmp_path_factory):
    from model_doctor.cli import main

    out = tmp_path_factory.mktemp("orig")
    assert main(["train", "--data", "decoy-digits", "--model", "tinycnn", "--epochs", "2", "--out", str(out)]) == 0
    return out / "model.safetensors"


@pytest.mark.slow
def test_treat_equals_the_protocol_written_out(decoy_original, tmp_path):
    """treat (β 1 and 3, control, counterfactual, 2 seeds) against a naive loop over seeds and arms."""
    from model_doctor.data.masks import ExpandedMasks
    from model_doctor.runtime import load_data, load_model, train_val_split
    from model_doctor.treatment.pools import make_pools
    from model_doctor.treatment.reliance import background_reliance
    from model_doctor.treatment.selection import selection_score
    from model_doctor.treatment.space import CounterfactualLoss

    cfg = Config(out=str(tmp_path / "t"))
    cfg.model.weights = str(decoy_original)
    cfg.data.name = "decoy-digits"
    cfg.treat.alpha, cfg.treat.beta, cfg.treat.epochs, cfg.treat.seeds = 0.0, [1.0, 3.0], 1, [0, 1]
    cfg.treat.annotated_per_class, cfg.treat.refine, cfg.treat.kl_weight = 6, "none", 0.5
    summary = run_treat(copy.deepcopy(cfg), log=lambda s: None)

    cfg.treat.lr = 0.01
    original, meta = load_model(cfg)
    full = load_data(cfg, "train", 1, 10)
    tr, va = train_val_split(cfg, full, 1)
    pools = make_pools(Subset(full, tr.indices), Subset(ExpandedMasks(full, 0), tr.indices), 0.25, 6, 0, "none")
    test = load_data(cfg, "test", 1, 10)
    floor = 0.5 * evaluate(original, va, 10)["acc"]  # --min-val-share 0.5 of the original's validation accuracy
    assert summary["selection"]["val_floor"] == pytest.approx(floor)
    for row in summary["runs"]:
        seed, accs, scores = row["seed"], {}, {}
        for name, beta in (("treated-beta1", 1.0), ("treated-beta3", 3.0), ("control", None)):
            model = copy.deepcopy(original)

            def select(m):
                rel = background_reliance(m, pools.select, seed=0)
                return {"select_score": selection_score(evaluate(m, va, 10)["acc"], rel, floor=floor)}

            fcfg = FitConfig(epochs=1, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=64, seed=seed)
            terms = CounterfactualLoss(pools.train, beta, kl_weight=0.5, pool_batch=32, seed=seed) if beta else None
            res = fit(model, pools.masked_train, va, fcfg, 10, terms=terms, select=select)
            accs[name], scores[name] = evaluate(model, test, 10)["acc"], res.best_row["select_score"]
        chosen = 1.0 if scores["treated-beta1"] >= scores["treated-beta3"] else 3.0
        assert row["chosen_beta"] == chosen
        assert row["treated"]["test_acc"] == accs[f"treated-beta{chosen:g}"]
        assert row["control"]["test_acc"] == accs["control"]
        assert row["treated-beta3"]["test_acc"] == accs["treated-beta3"]
    on_disk = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert on_disk["schema"] == 2 and on_disk["treated"]["test_acc"] == summary["treated"]["test_acc"]


@pytest.mark.slow
def test_reproduce_cells_equal_the_protocol_written_out(tmp_path):
    """A tiny reproduce grid (base, control, channel) against fits composed by hand."""
    from model_doctor.data.datasets import load_dataset
    from model_doctor.diagnosis import Diagnosis
    from model_doctor.experiment import subset
    from model_doctor.models import build_model
    from model_doctor.reproduce import load_grid, run_grid
    from model_doctor.training import split_train_val
    from model_doctor.treatment import ModelDoctorLoss

    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(f"models: [tinycnn]\ndatasets: [digits]\nseeds: [1]\nvariants: [base, control, channel]\n"
                         f"train_subset: 400\ntest_subset: 150\ntrain: {{epochs: 3}}\ntreat: {{epochs: 1}}\n"
                         f"diagnose: {{samples_per_class: 5, min_confidence: 0.0, noise_draws: 2}}\nout: {tmp_path / 'g'}\n")
    grid = load_grid(grid_file)
    cells = {c["variant"]: c for c in run_grid(grid, log=lambda s: None)["cells"]}
    train = subset(load_dataset("digits", "train", image_size=None, in_channels=1), 400, seed=0)
    test = subset(load_dataset("digits", "test", image_size=None, in_channels=1), 150, seed=0)
    tr, va = split_train_val(train, 0.1, seed=0)
    torch.manual_seed(1)
    base = build_model("tinycnn", in_channels=1, num_classes=10, image_size=32)
    fit(base, tr, va, FitConfig(epochs=3, lr=0.05, batch_size=64, seed=1), 10)
    assert cells["base"]["test_acc"] == evaluate(base, test, 10)["acc"]
    diag = Diagnosis.load(tmp_path / "g" / "digits" / "tinycnn" / "seed1" / "diagnosis")
    layer = diag.layers
    for variant, alpha in (("control", None), ("channel", 10.0)):
        model = copy.deepcopy(base)
        terms = ModelDoctorLoss(diag, layer, alpha=alpha, beta=0.0, noise_draws=1, seed=1) if alpha else None
        fit(model, tr, va, FitConfig(epochs=1, lr=0.01, batch_size=64, seed=1), 10, terms=terms)
        assert cells[variant]["test_acc"] == evaluate(model, test, 10)["acc"], variant
