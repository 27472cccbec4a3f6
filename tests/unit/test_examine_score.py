import torch

from model_doctor.diagnosis import deviation_scores


def test_deviation_is_total_variation_distance():
    g = torch.tensor([[1.0, 1.0, 2.0], [0.0, 0.0, 5.0]])
    profile = torch.tensor([[2.0, 2.0, 4.0], [1.0, 1.0, 0.0]])
    score, diff = deviation_scores(g, profile)
    # same distribution -> 0; disjoint support -> 1
    torch.testing.assert_close(score, torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(diff[1], torch.tensor([-0.5, -0.5, 1.0], dtype=torch.float64))
