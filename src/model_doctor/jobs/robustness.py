"""``model-doctor robustness``: Discovery 2 (paper Fig. 3): accuracy under noise on a layer"s feature maps."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..runtime import Log, load_data, load_model, out_dir, save_run_config, versions, write_json

__all__ = ["run_robustness"]


def run_robustness(cfg: Config, layer: str | None, eps: float, samples: int, log: Log = print) -> dict[str, Any]:
    """Discovery 2 (paper Fig. 3) on the test split: ``robustness.json`` in ``cfg.out``."""
    from ..analysis import robustness_curves

    out = out_dir(cfg)
    model, meta = load_model(cfg)
    data = load_data(cfg, "test", meta["in_channels"], meta["num_classes"])
    lay = layer or (meta["default_layers"] if meta["default_layers"] != "auto" else None)
    if lay is None:
        from ..layers import resolve_layers

        lay = resolve_layers(model, "auto", data[0][0][None])[0][0]
    res = robustness_curves(model, data, lay, samples=samples, eps=eps)
    save_run_config(cfg, out, {"versions": versions(), "model": meta, "robustness": {"layer": lay, "eps": eps}})
    write_json(out / "robustness.json", res)
    log(f"robustness at {lay} over {res['samples']} samples (FGSM eps {eps}): noise range {res['ranges']}\n"
        f"  normal accuracy      {[round(v, 3) for v in res['normal']]}\n"
        f"  adversarial accuracy {[round(v, 3) for v in res['adversarial']]} -> {out / 'robustness.json'}")
    return res
