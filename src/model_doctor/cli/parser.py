"""The CLI's flags, one ``_add_<command>`` per command. Defaults live in :class:`~model_doctor.config.Config`;
:func:`_defaults_into_help` writes them into the help, so they are never typed twice."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..config import SELECT_RULES, Config
from ..data.refine import REFINE_METHODS
from ..models import model_names
from ..treatment.space import SPACE_METHODS

__all__ = ["build_parser"]

_MODEL_HELP = "architecture: {%s}, torchvision:NAME or file:path.py:factory (default: from model.json beside --weights, else smallcnn)"


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--config", help="YAML config file; command-line flags override it")
    g.add_argument("--model", dest="model.name", help=_MODEL_HELP % ", ".join(model_names()))
    g.add_argument("--weights", dest="model.weights", help="trained weights: .safetensors or a state-dict .pt (loaded with weights_only=True)")
    g.add_argument("--in-channels", dest="model.in_channels", type=int, help="input channels of the model (default: 3 for colour ImageFolder images, else 1; "
                                                                                  "later commands read model.json)")
    g.add_argument("--num-classes", dest="model.num_classes", type=int, help="number of classes (default: from the data)")
    g.add_argument("--pretrained", dest="model.pretrained", action="store_const", const=True,
                   help="start from torchvision/timm ImageNet weights (cached locally or downloaded; never needed by tests)")
    g.add_argument("--small", dest="model.small", action=argparse.BooleanOptionalAction, default=None,
                   help="small-image variant of the architecture (CIFAR-style stem); default: images < 64 px")
    g.add_argument("--data", dest="data.name", help="dataset: digits (embedded), mnist, fashion-mnist, imagefolder:PATH")
    g.add_argument("--data-root", dest="data.root", help="folder holding torchvision datasets (e.g. ../shared/data)")
    g.add_argument("--image-size", dest="data.image_size", type=int, help="resize images to this size (default: the size the model was trained at "
                                                                                "(model.json), else per dataset)")
    g.add_argument("--download", dest="data.download", action="store_const", const=True, help="let torchvision download the dataset")
    g.add_argument("--out", dest="out", help="output folder (created; the resolved config.yaml is written there)")
    g.add_argument("--device", dest="runtime.device", help="auto (CUDA when available; default), cpu, cuda or cuda:N; "
                                                  "under torchrun each rank uses cuda:LOCAL_RANK")
    g.add_argument("--workers", dest="runtime.workers", type=int,
                   help="DataLoader worker processes (default: 0 on CPU, up to 8 per GPU process on CUDA)")


def _diag_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("diagnosis (paper Eq. 4)")
    g.add_argument("--layers", dest="diagnose.layers", nargs="+",
                   help="layers to diagnose: dotted names, or auto / auto:K = last K conv layers in execution order (default: the "
                        "architecture's own layer, marked by `model-doctor layers NAME`; auto for unregistered models)")
    g.add_argument("--samples-per-class", dest="diagnose.samples_per_class", type=int, help="T: confident samples per class")
    g.add_argument("--min-confidence", dest="diagnose.min_confidence", type=float, help="tau: softmax confidence a sample must exceed")
    g.add_argument("--noise", dest="diagnose.noise", type=float, help="delta: noise half-width in feature-map units (the paper gives none)")
    g.add_argument("--noise-draws", dest="diagnose.noise_draws", type=int, help="J: noise draws per sample, 0 = no noise")
    g.add_argument("--reduce", dest="diagnose.reduce", choices=["abs", "relu"], help="abs = paper Eq. 3, relu = official code")
    g.add_argument("--theta", dest="diagnose.theta", type=float, help="threshold on min-max normalised correlation for relevant channels")
    g.add_argument("--batch-size", dest="diagnose.batch_size", type=int,
                   help="the diagnosis's batch: samples per forward/backward (in treat too; --treat-batch-size is the fine-tune's)")
    g.add_argument("--seed", dest="diagnose.seed", type=int, help="noise seed")
    g.add_argument("--allow-empty-classes", dest="diagnose.allow_empty_classes", action="store_const", const=True,
                   help="do not fail when a class has no eligible sample")


def _folder_opts(p: argparse.ArgumentParser, resume: str) -> None:
    """--resume / --overwrite: what to do when --out already holds a run of this command (else it is refused)."""
    g = p.add_argument_group("a used --out (a folder that holds a run of this command is refused without one of these)")
    g.add_argument("--resume", dest="runtime.resume", action="store_const", const=True, help=resume)
    g.add_argument("--overwrite", dest="runtime.overwrite", action="store_const", const=True,
                   help="start over: remove the files this command wrote there (nothing else) and run again")


def _scale_opts(g) -> None:
    g.add_argument("--freeze-bn", dest="train.freeze_bn", action="store_const", const=True, help="keep BatchNorm in eval mode while training")
    g.add_argument("--sync-bn", dest="train.sync_bn", action="store_const", const=True, help="SyncBatchNorm under torchrun (CUDA only)")
    g.add_argument("--precision", dest="runtime.precision", choices=["fp32", "bf16", "fp16"],
                   help="fp32 or bf16 autocast for the whole run (in treat: its diagnosis and every fine-tune); fp16 is refused")


def build_parser() -> argparse.ArgumentParser:
    """Every command's flags; defaults come from :class:`~model_doctor.config.Config` and are
    written into the help by :func:`_defaults_into_help` (never typed twice)."""
    parser = argparse.ArgumentParser(prog="model-doctor", description="Diagnose and treat CNN classifiers (Model Doctor, AAAI 2022).")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors (or MODEL_DOCTOR_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_diagnose, _add_examine, _add_treat, _add_select, _add_report, _add_analyze, _add_layers,
                _add_reproduce, _add_waterbirds, _add_demo):
        add(sub)
    _defaults_into_help(parser)
    return parser


def _config_default(dest: str) -> Any:
    """The default of a ``section.key`` option in :class:`Config` (``None`` when it has none)."""
    section, _, key = dest.partition(".")
    return getattr(getattr(Config(), section, None), key, None) if key else None


def _defaults_into_help(parser: argparse.ArgumentParser) -> None:
    """Append ``(default X)`` from :class:`Config` to each option's help; a choice marked
    ``(default)`` in the help must be the Config default (checked here, so help cannot drift)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in action.choices.values():
                _defaults_into_help(p)
            continue
        value = _config_default(action.dest) if "." in action.dest else None
        if value is None or isinstance(value, bool) or action.help is None:
            continue
        marked = re.search(r"(\w+) \(default[):]", action.help)
        if marked:
            if str(value) != marked.group(1):
                raise AssertionError(f"help of {action.option_strings} marks {marked.group(1)!r} as default, Config has {value!r}")
            continue
        shown = " ".join(map(str, value)) if isinstance(value, list) else value
        action.help = f"{action.help} (default {shown})"


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the original classifier (SGD 0.01, momentum 0.9, wd 5e-4, cosine)")
    _common(p)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", dest="train.epochs", type=int, help="epochs")
    g.add_argument("--lr", dest="train.lr", type=float, help="learning rate")
    g.add_argument("--batch-size", dest="train.batch_size", type=int, help="the training batch: images per SGD step")
    g.add_argument("--seed", dest="train.seed", type=int, help="seed for initialisation, split and data order")
    g.add_argument("--val-fraction", dest="train.val_fraction", type=float, help="share of the training split held out for validation")
    _scale_opts(g)
    _folder_opts(p, "continue a killed run from OUT/checkpoint.pt (same settings only)")


def _add_diagnose(sub) -> None:
    p = sub.add_parser("diagnose", help="class x channel correlation per layer from confident training samples")
    _common(p)
    _diag_opts(p)
    p.add_argument("--precision", dest="runtime.precision", choices=["fp32", "bf16", "fp16"],
                   help="fp32 or bf16 autocast (GPUs); fp16 is refused")
    p.add_argument("--estimate", dest="diagnose.estimate", action="store_const", const=True,
                   help="do not diagnose: time a few images and print how long the run would take, with its FLOPs")
    _folder_opts(p, "a finished diagnosis with the same settings is kept as it is; an interrupted one runs again")


def _add_examine(sub) -> None:
    p = sub.add_parser("examine", help="per-sample deviation from the class profile, derivative maps, AUROC")
    _common(p)
    g = p.add_argument_group("examination")
    g.add_argument("--diagnosis", dest="examine.diagnosis", help="folder written by `model-doctor diagnose`")
    g.add_argument("--split", dest="examine.split", choices=["train", "test"], help="split to examine")
    g.add_argument("--limit", dest="examine.limit", type=int, help="examine only the first N samples")
    g.add_argument("--top-k", dest="examine.top_k", type=int, help="most deviating channels to report")
    g.add_argument("--masks", dest="examine.masks", help="foreground annotations of the examined split: adds background reliance "
                                                        "(background-swap accuracy, gradient share outside the masks)")
    g.add_argument("--mask-format", dest="examine.mask_format", choices=["labelme", "png", "coco", "boxes"], help="annotation format")
    g.add_argument("--refine", dest="examine.refine", choices=list(REFINE_METHODS),
                   help="foreground inside each annotation: grabcut or none (the annotation as given)")
    g.add_argument("--groups", dest="examine.groups",
                   help="CSV with file,group rows (paths relative to the ImageFolder root): accuracy per group")
    g.add_argument("--erode", dest="examine.erode", type=int, help="shrink each foreground by N pixels after refinement")
    g.add_argument("--batch-size", dest="examine.batch_size", type=int, help="the examination's batch: samples per forward/backward")
    g.add_argument("--precision", dest="runtime.precision", choices=["fp32", "bf16", "fp16"],
                   help="fp32 or bf16 autocast (GPUs); fp16 is refused")
    _folder_opts(p, "a finished examination with the same settings is kept as it is; an interrupted one runs again")


def _add_treat(sub) -> None:
    p = sub.add_parser("treat", help="fine-tune with the channel-/space-wise constraints next to a CE-only control",
                       usage="model-doctor treat --weights FILE --out DIR [--masks M --alpha 0 --beta B [B ...]] "
                             "[--seeds S [S ...]] [options]")
    _common(p)
    for add in (_treat_first, _treat_space, _treat_selection):
        add(p)
    _diag_opts(p)   # used only when treat diagnoses the original itself
    _treat_paper(p)
    _treat_fit(p)
    _folder_opts(p, "continue a killed run from its checkpoints: finished arms load, the interrupted one resumes (same settings only)")


def _treat_first(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("treatment: what to treat with (the options you set first)")
    g.add_argument("--alpha", dest="treat.alpha", type=float, help="channel-wise weight, Eq. 5")
    g.add_argument("--beta", dest="treat.beta", type=float, nargs="+",
                   help="space-wise weight(s); needs masks. Several (e.g. 1 3) train one arm each and keep, "
                        "per seed, the one the selection rule picks (validation + held-out background-swap accuracy)")
    g.add_argument("--masks", dest="treat.masks", help="foreground annotations for --beta/--rrr: a folder (labelme, png) or file (coco, boxes)")
    g.add_argument("--mask-format", dest="treat.mask_format", choices=["labelme", "png", "coco", "boxes"], help="annotation format")
    g.add_argument("--seeds", dest="treat.seeds", type=int, nargs="+", help="fine-tuning seeds")
    g.add_argument("--epochs", dest="treat.epochs", type=int, help="fine-tuning epochs")
    g.add_argument("--lr", dest="treat.lr", type=float, help="fine-tuning learning rate (default: the rate the original was trained at, from "
                                                                      "the config.yaml beside --weights; else 0.01, as the paper)")
    g.add_argument("--diagnosis", dest="treat.diagnosis", help="saved diagnosis of the original (default: diagnose it first into OUT/diagnosis)")
    g.add_argument("--groups", dest="treat.groups",
                   help="CSV with file,group rows (paths relative to the ImageFolder root): adds worst-group and per-group "
                        "test accuracy, and a verdict on the worst group")
    g.add_argument("--no-control", dest="treat.control", action="store_const", const=False, help="skip the CE-only control arm")


def _treat_space(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("space-wise method (--beta)")
    g.add_argument("--space-method", dest="treat.space_method", choices=list(SPACE_METHODS),
                   help="space-wise constraint: counterfactual (background swap), attribution (gradient x activation share), "
                        "input (input-gradient share or RRR), paper (Eq. 6, for the reproduction); see docs/method.md")
    g.add_argument("--refine", dest="treat.refine", choices=list(REFINE_METHODS),
                   help="foreground inside each annotation: grabcut (OpenCV GrabCut estimates the object's pixels, so "
                        "background inside a box is swapped too) or none (the annotation as given)")
    g.add_argument("--erode", dest="treat.erode", type=int,
                   help="shrink each foreground by N pixels after refinement, so the object's edge pixels (which blend with "
                        "its background) are swapped too")
    g.add_argument("--object-colour", dest="treat.object_colour", choices=["unknown", "own", "cue"],
                   help="your word on the objects' colour: unknown (default: the plain swap heads, a swap claim needs the "
                        "colour-matched swap too), own (the colour is part of the class, a yellow fruit: the colour-matched "
                        "swap neither claims nor vetoes) or cue (a colour over the object may be a shortcut, a stain or a "
                        "white balance: counterfactuals paste colour-matched objects and the colour-matched swap selects "
                        "and heads; docs/method.md)")
    g.add_argument("--partners", dest="treat.partners", choices=["other", "any"],
                   help="whose background a counterfactual borrows: other (default: another class's) or any (any other "
                        "annotated image's, so the background says nothing about the label; docs/method.md)")
    g.add_argument("--kl-weight", dest="treat.kl_weight", type=float,
                   help="counterfactual: weight of the KL term that asks the pasted image for the original's prediction "
                        "(0 keeps only the pasted image's cross-entropy; docs/method.md)")
    g.add_argument("--pool-batch", dest="treat.pool_batch", type=int, help="annotated images drawn per step by the pool-based methods")
    g.add_argument("--input-mode", dest="treat.input_mode", choices=["share", "rrr"], help="--space-method input: share or rrr")
    g.add_argument("--expand", dest="treat.expand", type=int, help="foreground expansion in model-input px (default: the paper's 30 px at 224 px, scaled)")
    g.add_argument("--annotated-per-class", dest="treat.annotated_per_class", type=int,
                   help="use masks of only N training images per class (seeded; e.g. 20 on a fully annotated decoy benchmark)")


def _treat_selection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection and escalation (no test data)")
    g.add_argument("--select-rule", dest="treat.select_rule", choices=list(SELECT_RULES),
                   help="what picks each arm's epoch and the weight without test data: auto (default: groups when --groups "
                        "labels the validation images, else swap), swap (held-out background-swap accuracy, validation "
                        "accuracy breaking ties), balanced (the lower of the swap accuracy on another class's and on the "
                        "own class's backgrounds: does not reward reading the background backwards), mean (of "
                        "validation and swap accuracy; the validation split carries the "
                        "shortcut, so it favours weak constraints) or groups (worst-group validation accuracy; every "
                        "held-out annotated image then reports)")
    g.add_argument("--holdout", dest="treat.holdout", type=float,
                   help="share of each class's annotated images held out to measure background reliance and select")
    g.add_argument("--min-val-share", dest="treat.min_val_share", type=float,
                   help="an epoch whose validation accuracy fell under this share of the original's is chosen only when "
                        "every epoch of every weight did (0 = no floor; docs/method.md)")
    g.add_argument("--escalate-below", dest="treat.escalate_below", type=float,
                   help="when the treated models are right on fewer held-out selection images on another class's "
                        "background than this share of the original's accuracy on them as annotated, train every arm "
                        "again at --kl-weight 0 for --escalate-epochs and report that round (0 = never; docs/method.md)")
    g.add_argument("--escalate-epochs", dest="treat.escalate_epochs", type=int,
                   help="epochs of the escalated round (default: 3 × --epochs)")


def _treat_paper(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the paper's channel-wise term (--alpha) and baselines")
    g.add_argument("--treat-layers", dest="treat.layers", nargs="+", help="layers to constrain (default: the diagnosed ones)")
    g.add_argument("--v", dest="treat.v", type=float, help="Eq. 5 threshold on min-max normalised correlation (default: theta = 0.2)")
    g.add_argument("--treat-noise-draws", dest="treat.noise_draws", type=int, help="J in the constraints (0 = no noise)")
    g.add_argument("--treat-noise", dest="treat.noise", type=float, help="delta in the constraints (default: the diagnosis's)")
    g.add_argument("--variant", dest="treat.variant", choices=["paper", "official"], help="channel term: paper Eq. 5 or official code")
    g.add_argument("--treat-reduce", dest="treat.reduce", choices=["abs", "relu"], help="abs (paper) or relu (official code)")
    g.add_argument("--every", dest="treat.every", type=int, help="lazy regularisation: apply every k steps with weight x k")
    g.add_argument("--warmup-steps", dest="treat.warmup_steps", type=int, help="linear warm-up of the constraint weights")
    g.add_argument("--tail-bn", dest="treat.tail_bn", choices=["train", "eval"],
                   help="BatchNorm after a constrained layer in the constraint passes: train (batch statistics, the "
                        "derivative of the batch's summed logits; reaches earlier layers) or eval (running statistics: exact "
                        "per-image derivatives, cheaper); docs/method.md")
    g.add_argument("--rrr", dest="treat.rrr", type=float, help="RRR input-gradient baseline weight instead of alpha/beta")


def _treat_fit(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--treat-batch-size", dest="treat.batch_size", type=int, help="the fine-tune's batch: images per SGD step (--batch-size is the diagnosis's)")
    g.add_argument("--val-fraction", dest="train.val_fraction", type=float, help="validation share of the training split")
    g.add_argument("--freeze-bn", dest="treat.freeze_bn", action="store_const", const=True, help="keep BatchNorm in eval mode while treating")
    g.add_argument("--sync-bn", dest="train.sync_bn", action="store_const", const=True, help="SyncBatchNorm under torchrun (CUDA only)")
    g.add_argument("--precision", dest="runtime.precision", choices=["fp32", "bf16", "fp16"],
                   help="fp32 or bf16 autocast for the whole run (in treat: its diagnosis and every fine-tune); fp16 is refused")




def _add_select(sub) -> None:
    p = sub.add_parser("select", help="export low-confidence training images per class for annotation (LabelMe)")
    _common(p)
    g = p.add_argument_group("selection")
    g.add_argument("--low-confidence", dest="select.low_confidence", action="store_const", const=True,
                   help="pick the images with the lowest true-class probability (the paper's choice; default)")
    g.add_argument("--per-class", dest="select.per_class", type=int, help="images per class (the paper: 20)")
    _folder_opts(p, "export again into the folder with the same settings (a LabelMe file holding your shapes is never "
                    "overwritten, with or without this flag)")


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write RUN_DIR/report.html from the artifacts in RUN_DIR (offline, self-contained)")
    p.add_argument("run_dir", help="a folder holding outputs of diagnose / examine / treat / analyze")


def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="analyses for the report")
    asub = p.add_subparsers(dest="analysis", required=True)
    pr = asub.add_parser("robustness", help="Discovery 2 (Fig. 3): accuracy vs feature-noise range, normal vs FGSM samples")
    _common(pr)
    pr.add_argument("--layer", help="layer to add noise at (default: the architecture's default layer)")
    pr.add_argument("--eps", type=float, default=0.1, help="FGSM step in input units (default 0.1)")
    pr.add_argument("--samples", type=int, default=100, help="samples, as the paper (default 100)")


def _add_layers(sub) -> None:
    p = sub.add_parser("layers", help="list a model's conv layers in execution order and mark the default ones")
    p.add_argument("model", help=_MODEL_HELP % ", ".join(model_names()))
    p.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    p.add_argument("--image-size", type=int, default=32, help="input size used to trace the forward pass (default 32)")
    p.add_argument("--small", action=argparse.BooleanOptionalAction, default=None, help="small-image variant (default: size < 64)")


def _add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="Table-1 grid: models x datasets x {base, control, +channel, +space, +all} x seeds "
                                         "(--resume: finished cells are skipped)")
    p.add_argument("grid", help="grid YAML, e.g. configs/cpu-small.yaml or configs/paper.yaml")
    p.add_argument("--out", default=None, help="output folder (default: the grid's out)")
    p.add_argument("--dry-run", action="store_true", help="print the cells the grid holds and stop")
    p.add_argument("--resume", action="store_true", help="continue the grid in the output folder: finished cells load, an "
                                                         "interrupted one resumes (a used folder is refused without this "
                                                         "or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="start the grid over: remove its files in the output folder")


def _add_waterbirds(sub) -> None:
    p = sub.add_parser("waterbirds", help="write a Waterbirds-style benchmark (objects on natural photos, 95 %% "
                                          "background-class correlation in training, group-balanced val/test) as an ImageFolder")
    p.add_argument("--out", required=True, help="folder to write: train/ val/ test/, masks-box/, masks-exact/, groups.csv")
    p.add_argument("--fashion-root", default=None, help="folder holding FashionMNIST/raw (objects: tops vs footwear); "
                                                        "default: scikit-learn's digits (even vs odd)")
    p.add_argument("--size", type=int, default=64, help="image side in px (default 64)")
    p.add_argument("--correlation", type=float, default=0.95, help="share of training images on their class's place (default 0.95)")
    p.add_argument("--per-class", type=int, default=20, help="annotated training images per class (default 20)")
    p.add_argument("--n-train", type=int, default=4000, help="training images (default 4000)")
    p.add_argument("--n-val", type=int, default=400, help="validation images, group-balanced (default 400)")
    p.add_argument("--n-test", type=int, default=2000, help="test images, group-balanced (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of objects, photos and placement (default 0)")
    p.add_argument("--test-masks", action="store_true", help="also masks-test-box/ and masks-test-exact/ for every test "
                                                             "image, to measure reliance on the test images themselves")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train, diagnose and examine a small CNN on the embedded digits (no network)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs of the digits classifier (default 20)")
