"""``treat``'s options, each declared once (:func:`~model_doctor.config.options.opt`), under the
``--help`` group a user meets them in: what to treat with first, then the space-wise method, the
selection, the paper's channel-wise term and the fine-tune."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.refine import REFINE_METHODS
from .options import opt
from .sections import _FORMATS, _LR, _PIXELS, _POSITIVE_OR_UNSET, _REFINE, OBJECT_COLOUR, SELECT_RULES, SPACE_METHOD_NAMES

__all__ = ["TreatConfig"]

_UNIT = "use a number in [0, 1]"


@dataclass
class TreatConfig:
    # what to treat with (the options a user sets first)
    alpha: float = opt(1.0, "channel-wise weight, Eq. 5", lo=0)
    beta: Any = opt(0.0, "space-wise weight(s); needs masks. Several (e.g. 1 3) train one arm each and keep, per seed, "
                         "the one the selection rule picks (validation + held-out background-swap accuracy)",
                    nargs="+", kind=float)
    masks: str | None = opt(None, "foreground annotations for --beta/--rrr: a folder (labelme, png) or file (coco, boxes)")
    mask_format: str = opt("labelme", "annotation format", choices=_FORMATS)
    seeds: list[int] = opt(help="fine-tuning seeds", factory=lambda: [0], nargs="+", kind=int)
    epochs: int = opt(10, "fine-tuning epochs", lo=1)
    lr: float | None = opt(None, "fine-tuning learning rate (default: the rate the original was trained at, from the "
                                 "config.yaml beside --weights; else 0.01, as the paper)", lo=0, lo_open=True, fix=_LR)
    diagnosis: str | None = opt(None, "saved diagnosis of the original (default: diagnose it first into OUT/diagnosis)")
    groups: str | None = opt(None, "CSV with file,group rows (paths relative to the ImageFolder root): adds worst-group "
                                   "and per-group test accuracy, and a verdict on the worst group (it heads the verdict)")
    control: bool = opt(True, "skip the CE-only control arm", flag="--no-control", const=False)
    # the space-wise method (--beta)
    space_method: str = opt("counterfactual", "space-wise constraint: counterfactual (background swap), attribution "
                                              "(gradient x activation share), input (input-gradient share or RRR), paper "
                                              "(Eq. 6, for the reproduction); see docs/method.md",
                            choices=SPACE_METHOD_NAMES)
    refine: str = opt("grabcut", "foreground inside each annotation: grabcut (OpenCV GrabCut estimates the object's "
                                 "pixels, so background inside a box is swapped too) or none (the annotation as given)",
                      choices=REFINE_METHODS, fix=_REFINE)
    erode: int = opt(0, "shrink each foreground by N pixels after refinement, so the object's edge pixels (which blend "
                        "with its background) are swapped too", lo=0, fix=_PIXELS)
    object_colour: str = opt("unknown", "your word on the objects' colour: unknown (default: the reliance claim is the "
                                        "lower of the plain and the colour-matched swap), own (the colour is part of the "
                                        "class, a yellow fruit: turns the colour-matched check off, so a colour cast over "
                                        "the whole image would go unseen) or cue (a colour over the object may be a "
                                        "shortcut, a stain or a white balance: counterfactuals paste colour-matched "
                                        "objects and the colour-matched swap selects; docs/method.md)",
                             choices=OBJECT_COLOUR,
                             fix="use 'unknown' (default), 'own' (an object's colour is part of its class) or 'cue' (a "
                                 "colour over the object may be a shortcut)")
    partners: str = opt("other", "whose background a counterfactual borrows: other (default: another class's) or any "
                                 "(any other annotated image's, so the background says nothing about the label; "
                                 "docs/method.md)", choices=("other", "any"),
                        fix="use 'other' (another class's background) or 'any' (any other annotated image's)")
    kl_weight: float = opt(1.0, "counterfactual: weight of the KL term that asks the pasted image for the original's "
                                "prediction (0 keeps only the pasted image's cross-entropy; docs/method.md)", lo=0,
                           fix="use a number >= 0 (1 = default, 0 = no KL term)")
    pool_batch: int = opt(32, "annotated images drawn per step by the pool-based methods", lo=1)
    input_mode: str = opt("share", "--space-method input: share (scale-invariant) or rrr (Ross et al.)",
                          choices=("share", "rrr"))
    expand: int | None = opt(None, "foreground expansion in model-input px (default: the paper's 30 px at 224 px, scaled)")
    annotated_per_class: int | None = opt(None, "use masks of only N training images per class (seeded; e.g. 20 on a "
                                                "fully annotated decoy benchmark)", lo=1, fix=_POSITIVE_OR_UNSET)
    # selection and escalation (no test data)
    select_rule: str = opt("auto", "what picks each arm's epoch and the weight without test data: auto (default: groups "
                                   "when --groups labels the validation images, else swap), swap (held-out "
                                   "background-swap accuracy, validation accuracy breaking ties), balanced (the lower of "
                                   "the swap accuracy on another class's and on the own class's backgrounds: does not "
                                   "reward reading the background backwards), mean (of validation and swap accuracy; "
                                   "the validation split carries the shortcut, so it favours weak constraints) or groups "
                                   "(worst-group validation accuracy; every held-out annotated image then reports)",
                           choices=SELECT_RULES, fix="use 'auto' (default), 'swap', 'balanced', 'mean' or 'groups'")
    holdout: float = opt(0.25, "share of each class's annotated images held out to measure background reliance and "
                               "select", lo=0, hi=1, hi_open=True, fix="use a fraction in [0, 1), e.g. 0.25")
    min_val_share: float = opt(0.5, "an epoch whose validation accuracy fell under this share of the original's is "
                                    "chosen only when every epoch of every weight did (0 = no floor; docs/method.md)",
                               lo=0, hi=1, fix=_UNIT + " (0.5 = default, 0 = no floor)")
    escalate_below: float = opt(0.5, "when the treated models are right on fewer held-out selection images on another "
                                     "class's background than this share of the original's accuracy on them as "
                                     "annotated, train every arm again at --kl-weight 0 for --escalate-epochs and report "
                                     "that round (0 = never; docs/method.md)",
                                lo=0, hi=1, fix=_UNIT + " (0.5 = default, 0 = never escalate)")
    escalate_epochs: int | None = opt(None, "epochs of the escalated round (default: 3 × --epochs)", lo=1,
                                      fix="use a whole number >= 1 (default: 3 × treat.epochs)")
    # the paper's channel-wise term (--alpha) and baselines
    layers: Any = opt(None, "layers to constrain (default: the diagnosed ones)", flag="--treat-layers", nargs="+", kind=str)
    v: float | None = opt(None, "Eq. 5 threshold on min-max normalised correlation (default: theta = 0.2)", lo=0, hi=1,
                          fix="it is a fraction, use a value in [0, 1]")
    noise_draws: int = opt(10, "J in the constraints (0 = no noise)", flag="--treat-noise-draws", lo=0,
                           fix="use a finite value >= 0")
    noise: float | None = opt(None, "delta in the constraints (default: the diagnosis's)", flag="--treat-noise", lo=0)
    variant: str = opt("paper", "channel term: paper Eq. 5 or official code", choices=("paper", "official"))
    reduce: str = opt("abs", "abs (paper) or relu (official code)", flag="--treat-reduce", choices=("abs", "relu"))
    normalize: bool = opt(True, "normalise the constraints per element (the paper's loss sums)")
    every: int = opt(1, "lazy regularisation: apply every k steps with weight x k", lo=1)
    warmup_steps: int = opt(0, "linear warm-up of the constraint weights", lo=0, fix="use a finite value >= 0")
    tail_bn: str = opt("train", "BatchNorm after a constrained layer in the constraint passes: train (batch statistics, "
                                "the derivative of the batch's summed logits; reaches earlier layers) or eval (running "
                                "statistics: exact per-image derivatives, cheaper); docs/method.md",
                       choices=("train", "eval"), fix="use 'train' (default) or 'eval' (docs/method.md)")
    rrr: float = opt(0.0, "RRR input-gradient baseline weight instead of alpha/beta", lo=0)
    # the fine-tune
    batch_size: int = opt(64, "the fine-tune's batch: images per SGD step (--batch-size is the diagnosis's)",
                          flag="--treat-batch-size", lo=1)
    freeze_bn: bool = opt(False, "keep BatchNorm in eval mode while treating")
