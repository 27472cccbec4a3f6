"""The jobs behind the CLI commands, one module per command, as library calls taking a :class:`~model_doctor.config.Config`.

Each job writes its outputs and its resolved ``config.yaml`` into ``cfg.out`` and returns a small
summary dict. What they share (output folder, model and data loading, workers) is
:mod:`model_doctor.runtime`; nothing here parses arguments (``cli.py``) or computes method
internals (``diagnosis/``, ``treatment/``, ``study``).
"""

from .diagnose import run_diagnose
from .examine import run_examine
from .robustness import run_robustness
from .select import run_select
from .train import run_train
from .treat import run_treat

__all__ = ["run_train", "run_diagnose", "run_examine", "run_treat", "run_select", "run_robustness"]
