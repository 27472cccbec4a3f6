"""``model-doctor treat``: the files of a run (weights, data, masks, diagnosis) loaded, then
:func:`model_doctor.treat`, the library call that does the treatment."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..runtime import Log, load_data, load_model, out_dir, own_val, trained_lr
from ..treating import Masked, treat

__all__ = ["run_treat", "masks_of"]


def run_treat(cfg: Config, log: Log = print, train_data: Any = None, test_data: Any = None) -> dict[str, Any]:
    """Treat the model of ``cfg.model.weights`` on ``cfg.data`` (with ``cfg.treat.masks``) against a
    CE-only control; ``train_data`` / ``test_data`` replace the named dataset. Returns the summary."""
    if cfg.diagnose.estimate:
        raise ValueError("diagnose.estimate is set, but only `model-doctor diagnose` estimates; remove it from the "
                         "config to treat, or run `model-doctor diagnose --estimate`")
    if not cfg.model.weights:
        raise ValueError("treat needs the trained original; pass --weights (from `model-doctor train`)")
    out = out_dir(cfg, "treat")  # settings checked and a used folder refused before anything loads
    original, meta = load_model(cfg)
    if cfg.treat.lr is None:
        cfg.treat.lr = trained_lr(cfg.model.weights)
        log(f"fine-tuning at learning rate {cfg.treat.lr:g} (the original's; --lr to change)")
    in_ch, n_cls = meta["in_channels"], meta["num_classes"]
    train = train_data if train_data is not None else load_data(cfg, "train", in_ch, n_cls)
    test = (lambda: test_data) if test_data is not None else (lambda: load_data(cfg, "test", in_ch, n_cls, like=train))
    result = treat(original, train, test, out=out, masks=masks_of(cfg, train), val=own_val(cfg, train, in_ch),
                   diagnosis=cfg.treat.diagnosis, config=cfg, meta=meta, log=log)
    return result.to_dict()


def masks_of(cfg: Config, train: Any) -> Masked | None:
    """The annotations of ``--masks`` paired with the training images, as ``px -> dataset``."""
    if not cfg.treat.masks:
        return None
    from ..data.annotations import load_masks
    from ..data.workflow import with_masks

    found = load_masks(cfg.treat.mask_format, cfg.treat.masks, dataset_root=cfg.treat.masks)
    return lambda px: with_masks(train, found, px)
