"""Treatment: the constraint losses (Eq. 5, Eq. 6, RRR baseline) and the fine-tuning run."""

from .losses import ModelDoctorLoss, channel_term, resize_background, space_term
from .space import RRRLoss
from .terms import LossTerm, MaskedBatch

__all__ = ["ModelDoctorLoss", "RRRLoss", "LossTerm", "MaskedBatch", "channel_term", "space_term", "resize_background"]
