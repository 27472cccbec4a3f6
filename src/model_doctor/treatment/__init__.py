"""Treatment: the constraint losses (Eq. 5, Eq. 6, RRR baseline) and the fine-tuning run."""

from .losses import ModelDoctorLoss, RRRLoss, channel_term, resize_background, space_term

__all__ = ["ModelDoctorLoss", "RRRLoss", "channel_term", "space_term", "resize_background"]
