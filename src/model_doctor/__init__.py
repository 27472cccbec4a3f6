"""torch-model-doctor: diagnose and treat CNN classifiers (Feng et al., AAAI 2022, "Model Doctor")."""

__version__ = "0.1.0"

from .diagnosis import Diagnosis, Examination, diagnose, examine
from .layers import resolve_layers
from .treating import TreatResult, treat

__all__ = ["__version__", "Diagnosis", "Examination", "diagnose", "examine", "resolve_layers", "treat", "TreatResult"]
