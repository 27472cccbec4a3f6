"""The CLI's flags, one ``_add_<command>`` per command: which options each command has and under which
``--help`` group. Every flag is built from its field's declaration (:mod:`model_doctor.config.sections`:
flag, type, choices, help); :func:`_defaults_into_help` writes the field's default into the help."""

from __future__ import annotations

import argparse
import re
import typing
from typing import Any

from ..config import Config
from ..config.options import declared, flag_of
from ..models import model_names

__all__ = ["build_parser", "add_option"]

_MODEL_HELP = "architecture: {%s}, torchvision:NAME or file:path.py:factory (default: from model.json beside --weights, else smallcnn)"


def add_option(g: Any, dest: str, help: str | None = None) -> None:
    """One flag, built from its field's declaration (:mod:`model_doctor.config.sections`): flag name,
    type, list or switch, choices and help; the default stays the field's (the flag's is None)."""
    section, _, name = dest.partition(".")
    cls = type(getattr(Config(), section))
    f, o = declared(cls)[name]
    hint = typing.get_type_hints(cls)[name]
    kw: dict[str, Any] = {"dest": dest, "help": help or o.help}
    if hint is bool:
        kw |= {"action": "store_const", "const": o.const if o.const is not None else not f.default}
    elif hint == bool | None:
        kw |= {"action": argparse.BooleanOptionalAction, "default": None}
    else:
        args = [h for h in typing.get_args(hint) if h is not type(None)] or [hint]
        base = o.kind or (typing.get_args(args[0])[0] if typing.get_origin(args[0]) is list else args[0])
        kw |= {"type": base} if base in (int, float) else {}
        kw |= {"nargs": o.nargs} if o.nargs else {}
        kw |= {"choices": list(o.choices)} if o.choices else {}
    g.add_argument(flag_of(name, o), **kw)


def _group(p: argparse.ArgumentParser, title: str, dests: list[str], helps: dict[str, str] | None = None) -> Any:
    """An argument group of ``--help`` holding these fields' flags (in this order)."""
    g = p.add_argument_group(title)
    for dest in dests:
        add_option(g, dest, (helps or {}).get(dest))
    return g


def _common(p: argparse.ArgumentParser) -> None:
    g = _group(p, "model and data", ["model.name", "model.weights", "model.in_channels", "model.num_classes",
                                     "model.pretrained", "model.small", "data.name", "data.root", "data.image_size",
                                     "data.download"], {"model.name": _MODEL_HELP % ", ".join(model_names())})
    g.add_argument("--config", help="YAML config file; command-line flags override it")
    g.add_argument("--out", dest="out", help="output folder (created; the resolved config.yaml is written there)")
    add_option(g, "runtime.device")
    add_option(g, "runtime.workers")


DIAGNOSE = ["diagnose.layers", "diagnose.samples_per_class", "diagnose.min_confidence", "diagnose.noise",
            "diagnose.noise_draws", "diagnose.reduce", "diagnose.theta", "diagnose.batch_size", "diagnose.seed",
            "diagnose.allow_empty_classes"]


def _folder_opts(p: argparse.ArgumentParser, resume: str) -> None:
    """--resume / --overwrite: what to do when --out already holds a run of this command (else it is refused)."""
    _group(p, "a used --out (a folder that holds a run of this command is refused without one of these)",
           ["runtime.resume", "runtime.overwrite"], {"runtime.resume": resume})


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
    _group(p, "training", ["model.init", "train.epochs", "train.lr", "train.batch_size", "train.seed",
                           "train.val_fraction", "train.freeze_bn", "train.sync_bn", "runtime.precision"])
    _folder_opts(p, "continue a killed run from OUT/checkpoint.pt (same settings only)")


def _add_diagnose(sub) -> None:
    p = sub.add_parser("diagnose", help="class x channel correlation per layer from confident training samples")
    _common(p)
    _group(p, "diagnosis (paper Eq. 4)", DIAGNOSE + ["diagnose.estimate", "runtime.precision"])
    _folder_opts(p, "a finished diagnosis with the same settings is kept as it is; an interrupted one runs again")


def _add_examine(sub) -> None:
    p = sub.add_parser("examine", help="per-sample deviation from the class profile, derivative maps, AUROC")
    _common(p)
    _group(p, "examination", ["examine.diagnosis", "examine.split", "examine.limit", "examine.top_k", "examine.masks",
                              "examine.mask_format", "examine.refine", "examine.groups", "examine.erode",
                              "examine.batch_size", "runtime.precision"])
    _folder_opts(p, "a finished examination with the same settings is kept as it is; an interrupted one runs again")


def _add_treat(sub) -> None:
    p = sub.add_parser("treat", help="fine-tune with the channel-/space-wise constraints next to a CE-only control",
                       usage="model-doctor treat --weights FILE --out DIR [--masks M --alpha 0 --beta B [B ...]] "
                             "[--seeds S [S ...]] [options]")
    _common(p)
    t = lambda *names: [f"treat.{n}" for n in names]
    _group(p, "treatment: what to treat with (the options you set first)",
           t("alpha", "beta", "masks", "mask_format", "seeds", "epochs", "lr", "diagnosis", "groups", "control"))
    _group(p, "space-wise method (--beta)", t("space_method", "refine", "erode", "object_colour", "partners", "kl_weight",
                                              "pool_batch", "input_mode", "expand", "annotated_per_class"))
    _group(p, "selection and escalation (no test data)",
           t("select_rule", "holdout", "min_val_share", "escalate_below", "escalate_epochs"))
    _group(p, "diagnosis of the original (when treat diagnoses it itself)", DIAGNOSE)
    _group(p, "the paper's channel-wise term (--alpha) and baselines",
           t("layers", "v", "noise_draws", "noise", "variant", "reduce", "every", "warmup_steps", "tail_bn", "rrr"))
    _group(p, "fine-tuning", t("batch_size", "freeze_bn") + ["train.val_fraction", "train.sync_bn", "runtime.precision"])
    _folder_opts(p, "continue a killed run from its checkpoints: finished arms load, the interrupted one resumes (same settings only)")


def _add_select(sub) -> None:
    p = sub.add_parser("select", help="export low-confidence training images per class for annotation (LabelMe)")
    _common(p)
    _group(p, "selection", ["select.low_confidence", "select.per_class"])
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
    p.add_argument("--pretraining", action="store_true",
                   help="write instead a shortcut-free pretraining set (train/ test/): every object class on any photo, "
                        "and every photo alone as its own class, for `train` and then `train --init` on the benchmark")
    p.add_argument("--n-objects", type=int, default=15000, help="--pretraining: object images (default 15000)")
    p.add_argument("--n-places", type=int, default=6000, help="--pretraining: photo-only images (default 6000)")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train, diagnose and examine a small CNN on the embedded digits (no network)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs of the digits classifier (default 20)")
