"""Atomic file writes and safe loading of user-provided weights."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["lock_folder", "lock_holder", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_safetensors",
           "load_state_dict", "weights_fingerprint"]


def _umask() -> int:
    """The process's umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder + ``os.replace``.

    A reader (or a killed run) sees either the old file or the complete new one, never half.
    The file gets the mode any other tool would give it (0666 less the user's umask), not
    ``mkstemp``'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _dumps(obj: Any, level: int = 0) -> str:
    """JSON indented by containers, with each list of plain values on one line: a summary holding
    hundreds of per-image values stays readable instead of one value per line."""
    def nested(v: Any) -> bool:
        return isinstance(v, (dict, list, tuple)) and len(v) > 0

    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(obj, dict) and obj:
        # each key through json's own key conversion (ints, floats, bools, None become strings as json writes them)
        items = [f"{inner}{json.dumps({k: 0})[1:-4]}: {_dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, (list, tuple)) and any(nested(v) for v in obj):
        return "[\n" + ",\n".join(f"{inner}{_dumps(v, level + 1)}" for v in obj) + f"\n{pad}]"
    return json.dumps(obj)


def atomic_write_json(path: str | os.PathLike, obj: Any, compact: bool = False) -> None:
    """``obj`` as JSON, indented with flat lists on one line, or all on one line with ``compact``
    (benchmark results holding thousands of per-image values)."""
    text = json.dumps(obj, separators=(",", ":")) if compact else _dumps(obj)
    atomic_write_text(path, text + "\n")


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                            metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a torch file, never executing pickled code.

    Torch files are read with ``weights_only=True``; a checkpoint dict holding the weights under
    ``"model"`` or ``"state_dict"`` is unwrapped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a state dict (with the fix).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--weights {str(path)!r} is a folder; pass the weights file inside it (e.g. model.safetensors)")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist; check --weights")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # SafetensorError, truncated or not a safetensors file
            raise ValueError(f"cannot read {str(path)!r} as safetensors ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); re-save it with "
                             "safetensors.torch.save_file") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"cannot load {str(path)!r} with weights_only=True ({type(exc).__name__}); save a state_dict "
            "(torch.save(model.state_dict(), ...)) or a .safetensors file"
        ) from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{str(path)!r} does not hold a state dict of tensors; save model.state_dict()")
    return obj


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over parameter and buffer names, shapes and bytes (identifies the exact weights)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


_HELD: set[str] = set()


def lock_holder(folder: str | os.PathLike) -> str | None:
    """``process PID (command)`` of another live process holding ``folder``'s lock, else None
    (no lock, an unreadable one, this process's own, or one whose process is gone). Reads only."""
    try:
        holder = json.loads((Path(folder) / ".model-doctor.lock").read_text(encoding="utf-8"))
        pid = int(holder.get("pid", -1))
    except (OSError, ValueError, AttributeError):
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return f"process {pid} ({holder.get('command', '?')})"


def lock_folder(folder: str | os.PathLike) -> Path:
    """Take ``folder/.model-doctor.lock`` for this process (released at exit).

    A second process writing into the same output folder would leave a config describing one run
    and artifacts of the other; it gets a one-line error naming the holder instead. A lock whose
    process is gone is taken over.

    Raises:
        ValueError: another live process holds the folder.
    """
    import atexit
    import sys

    path = Path(folder) / ".model-doctor.lock"
    key = str(path.resolve())
    if key in _HELD:
        return path
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = lock_holder(folder)
            if holder:
                raise ValueError(f"output folder {str(folder)!r} is in use by {holder}; wait for it or choose "
                                 "another --out") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "command": " ".join(sys.argv[:3])}, fh)
        _HELD.add(key)
        atexit.register(_release, path, key)
        return path
    raise ValueError(f"cannot lock output folder {str(folder)!r}; remove {str(path)!r} if no run uses it")


def _release(path: Path, key: str) -> None:
    """Remove a folder lock at exit (atexit)."""
    path.unlink(missing_ok=True)
    _HELD.discard(key)
