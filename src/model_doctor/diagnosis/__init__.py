"""Diagnosis: per-class channel statistics (Eq. 2-4), the artifact, per-sample examination."""

from .artifact import DEFAULT_THETA, Diagnosis, minmax_normalize
from .cost import DiagnosisCost, diagnosis_flops, estimate_diagnosis
from .engine import DEFAULT_NOISE, CorrelationState, diagnose, predict, select_samples
from .examine import Examination, deviation_scores, examine

__all__ = ["Diagnosis", "diagnose", "examine", "Examination", "deviation_scores", "select_samples",
           "predict", "CorrelationState", "diagnosis_flops", "DiagnosisCost", "estimate_diagnosis", "minmax_normalize", "DEFAULT_THETA", "DEFAULT_NOISE"]
