"""The worst-group accuracy of random guessing, against naive float64 references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from model_doctor.data.groups import chance_worst_group


def _enumerated(sizes: list[int], k: int) -> tuple[float, float]:
    """Every outcome of every image (K^N of them), each equally likely: the worst group's hit rate."""
    worst = []
    for guess in itertools.product(range(k), repeat=sum(sizes)):
        hits, start = [], 0
        for n in sizes:
            hits.append(sum(g == 0 for g in guess[start:start + n]) / n)   # class 0 is right: any fixed one is
            start += n
        worst.append(min(hits))
    w = np.array(worst, dtype=np.float64)
    return float(w.mean()), float(w.std())


@pytest.mark.parametrize("sizes,k", [([3, 4], 2), ([2, 2, 3], 2), ([2, 3], 3), ([5], 2), ([1, 1, 1, 1], 2)])
def test_matches_every_outcome_enumerated(sizes, k):
    mean, std = chance_worst_group(sizes, k)
    ref_mean, ref_std = _enumerated(sizes, k)
    assert mean == pytest.approx(ref_mean, abs=1e-12) and std == pytest.approx(ref_std, abs=1e-12)


def test_four_groups_of_250_two_classes_sit_well_below_a_half():
    mean, std = chance_worst_group([250] * 4, 2)
    assert round(100 * mean, 1) == 46.7 and round(100 * std, 1) == 2.2      # the figure
    rng = np.random.default_rng(0)
    sim = (rng.binomial(250, 0.5, (20000, 4)) / 250).min(1)                 # simulated guessers
    assert abs(sim.mean() - mean) < 4 * sim.std() / math.sqrt(len(sim))


def test_one_large_group_tends_to_one_over_k_and_bad_input_names_the_value():
    assert chance_worst_group([10000], 4)[0] == pytest.approx(0.25, abs=1e-9)
    with pytest.raises(ValueError, match="sizes \\[0, 3\\]"):
        chance_worst_group([0, 3], 2)
    with pytest.raises(ValueError, match="1 classes"):
        chance_worst_group([3], 1)
