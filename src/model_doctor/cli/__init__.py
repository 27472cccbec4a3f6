"""``model-doctor``: parse (:mod:`.parser`) -> config -> library call. Nothing else lives here."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..config import Config, apply_overrides, load_config
from ..validation import validate
from .parser import build_parser

__all__ = ["main", "build_parser"]


def _to_config(args: argparse.Namespace) -> Config:
    values: dict[str, Any] = {k: v for k, v in vars(args).items() if "." in k or k == "out"}
    cfg = load_config(getattr(args, "config", None))
    for key in ("diagnose.layers", "treat.layers"):
        layers = values.get(key)
        if isinstance(layers, list) and len(layers) == 1:
            values[key] = layers[0]
    return validate(apply_overrides(cfg, values))


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    text = str(message)
    return f"model-doctor: warning: {text[len('model_doctor: '):] if text.startswith('model_doctor: ') else text}\n"


def _expected() -> tuple[type[BaseException], ...]:
    import yaml

    from ..training import NonFiniteLossError

    # OSError covers PermissionError, FileExistsError, read-only file systems and a full disk;
    # RuntimeError covers torch's state-dict size mismatches; KeyError/IndexError malformed artifacts
    return (ValueError, TypeError, OSError, NonFiniteLossError, KeyError, IndexError, yaml.YAMLError, RuntimeError)


def _one_line(exc: BaseException) -> str:
    """One line naming the problem; the fix is in our own messages, else a pointer to --debug."""
    import errno

    from ..training import NonFiniteLossError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (ValueError, TypeError, NonFiniteLossError)) and not isinstance(exc, UnicodeError):
        return text
    if isinstance(exc, OSError):
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        fix = {errno.ENOSPC: "free disk space or choose another --out", errno.EROFS: "choose a writable --out",
               errno.EACCES: "check the permissions or choose another --out", errno.EEXIST: "choose another --out",
               errno.ENOTDIR: "a path component is a file; choose another --out"}.get(exc.errno or 0, "check the path")
        return f"{exc.strerror or text}{where}; {fix}"
    if isinstance(exc, KeyError):
        return f"missing key {text} in an input file (a malformed or foreign artifact?); rerun with --debug for details"
    if len(text) > 400:
        text = text[:400] + " …"
    return f"{type(exc).__name__}: {text}; rerun with --debug for the traceback"


def _cmd_layers(args: argparse.Namespace, log: Any) -> None:
    from ..layers import describe_layers

    rows = describe_layers(args.model, args.in_channels, args.image_size, args.small)
    print(f"{'#':>3}  {'layer':<40} {'in':>5} {'out':>5}  kernel/stride")
    for r in rows:
        mark = "  <- default" if r["default"] else ""
        if r.get("block"):
            print(f"{'':>3}  {r['name']:<40} {'':>5} {'':>5}  ({r['kernel']} block output){mark}")
        else:
            print(f"{r['index']:>3}  {r['name']:<40} {r['in']:>5} {r['out']:>5}  {r['kernel']}/{r['stride']}{mark}")


def _cmd_report(args: argparse.Namespace, log: Any) -> None:
    from ..report import write_report

    print(f"report: {write_report(args.run_dir)}")


def _cmd_analyze(args: argparse.Namespace, log: Any) -> None:
    from ..jobs import run_robustness

    run_robustness(_to_config(args), args.layer, args.eps, args.samples, log=log)


def _cmd_reproduce(args: argparse.Namespace, log: Any) -> None:
    from ..reproduce import load_grid, plan, run_grid

    grid = load_grid(args.grid)
    if args.out:
        grid.out = args.out
    if args.dry_run:
        print(plan(grid))
        return
    run_grid(grid, log=log, resume=args.resume, overwrite=args.overwrite)


def _cmd_demo(args: argparse.Namespace, log: Any) -> None:
    from ..demo import run_demo

    run_demo(args.out, epochs=args.epochs)


def _cmd_waterbirds(args: argparse.Namespace, log: Any) -> None:
    from ..data.waterbirds import write_pretraining, write_waterbirds

    if args.pretraining:
        out = write_pretraining(args.out, n_objects=args.n_objects, n_places=args.n_places, size=args.size,
                                seed=args.seed, fashion_root=args.fashion_root)
        log(f"wrote {out}: model-doctor train --data imagefolder:{out} --out BACKBONE, then on the benchmark "
            "model-doctor train --init BACKBONE/model.safetensors")
        return
    out = write_waterbirds(args.out, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, size=args.size,
                           correlation=args.correlation, per_class=args.per_class, seed=args.seed,
                           fashion_root=args.fashion_root, test_masks=args.test_masks)
    log(f"wrote {out}: --data imagefolder:{out} --masks {out}/masks-box --mask-format png --groups {out}/groups.csv")


def _cmd_job(args: argparse.Namespace, log: Any) -> Any:
    """train / diagnose / examine / treat / select: a config, then the job of that name."""
    from .. import jobs

    return getattr(jobs, f"run_{args.command}")(_to_config(args), log=log)


#: the exit status of a command that wrote its results but whose training diverged (2: an error, nothing done)
DIVERGED_EXIT = 3


def _diverged(command: str, result: Any) -> str | None:
    """One line for a result whose ``diverged`` list is not empty (a script must not take it for a success)."""
    bad = result.get("diverged") if isinstance(result, dict) else None
    if not bad:
        return None
    arms = ", ".join(" ".join(str(x) for x in (f"seed {d['seed']}" if "seed" in d else "", d["arm"]) if x) for d in bad)
    return (f"model-doctor {command}: error: training diverged ({arms}); its results are written, but they are not "
            "usable; the line above says which option to change")


_COMMANDS = {"layers": _cmd_layers, "report": _cmd_report, "analyze": _cmd_analyze, "reproduce": _cmd_reproduce,
             "demo": _cmd_demo, "waterbirds": _cmd_waterbirds}


def main(argv: list[str] | None = None) -> int:
    """The CLI: exit 0 on success, 2 with one line on stderr for an expected error (``--debug``: the traceback),
    3 when the results are written but a training diverged (:data:`DIVERGED_EXIT`)."""
    import warnings

    from ..distributed import init_from_env, is_main, shutdown

    expected = _expected()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    argv = [a for a in argv if a != "--debug"]
    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    distributed = init_from_env()  # under torchrun: join the process group
    log: Any = print
    if distributed and not is_main():
        os.environ["MODEL_DOCTOR_QUIET"] = "1"
        warnings.simplefilter("ignore")  # rank 0 reports
        log = lambda *_a, **_k: None
    try:
        line = _diverged(args.command, _COMMANDS.get(args.command, _cmd_job)(args, log))
        if line:
            print(line, file=sys.stderr)
            return DIVERGED_EXIT
        return 0
    except expected as exc:
        if debug or os.environ.get("MODEL_DOCTOR_DEBUG") == "1":
            raise
        print(f"model-doctor {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if distributed:
            shutdown()
