"""Every module of the package imports on its own (no import cycle hides behind the order in which
``model_doctor/__init__`` happens to import things): in a fresh interpreter, each module is
imported after every ``model_doctor`` module has been dropped from ``sys.modules`` (third-party
packages stay loaded, so the check takes seconds)."""

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = """
import importlib, sys, traceback
import torch, torchvision  # noqa: F401  loaded once; only the project's own modules are dropped
bad = []
for m in sys.argv[1:]:
    for k in [k for k in sys.modules if k == 'model_doctor' or k.startswith('model_doctor.')]:
        del sys.modules[k]
    try:
        importlib.import_module(m)
    except Exception as exc:
        bad.append(f'{m}: {type(exc).__name__}: {exc}')
print('\\n'.join(bad))
"""


def test_every_module_imports_alone():
    mods = sorted(".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                  for p in (SRC / "model_doctor").rglob("*.py") if p.name != "__main__.py")
    assert len(mods) > 30 and "model_doctor.models.paper" in mods
    res = subprocess.run([sys.executable, "-c", SCRIPT, *mods], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and res.stdout.strip() == "", res.stdout + res.stderr
