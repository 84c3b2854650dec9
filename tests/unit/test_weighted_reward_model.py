"""The model of a weighted-outcome metric, over many simulations with a planted truth: the numeric
(Gaussian) fit on each exposure's outcome weight picks the variant with the highest expected
weighted reward, not the one that converts most often (which a bool fit on conversions picks).

Variant 2 ("A") converts 54 % of the time, mostly to the 0.1 outcome (E[w] = 0.09); variant 3
("B") 20 %, mostly to the 1.0 outcome (E[w] = 0.155); variant 1, the baseline, E[w] = 0.03.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from levered.bandit.cells import Cells
from levered.bandit.glm import fit_cmab
from levered.bandit.mab import fit_mab
from levered.bandit.posterior import Posterior
from levered.bandit.results import summarize

Fit = Callable[[Cells, tuple[int, ...], str], Posterior]

WEIGHTS = np.array([0.0, 0.1, 1.0])  # failure, add_to_cart, purchase
TRUTH = np.array(  # per variant: P(failure), P(add_to_cart), P(purchase)
    [[0.88, 0.10, 0.02], [0.46, 0.50, 0.04], [0.80, 0.05, 0.15]]
)
EXPOSURES = 600
SIMULATIONS = 40


def simulate(rng: np.random.Generator) -> tuple[Cells, Cells]:
    """One optimization's cells: on the weights (what training fits) and on conversions."""
    counts = np.stack([rng.multinomial(EXPOSURES, p) for p in TRUTH])
    n = counts.sum(axis=1).astype(np.float64)
    weighted = Cells.of([1, 2, 3], n, counts @ WEIGHTS, counts @ WEIGHTS**2)
    converted = (counts[:, 1:]).sum(axis=1).astype(np.float64)
    return weighted, Cells.of([1, 2, 3], n, converted)


@pytest.mark.parametrize("fit", [fit_mab, fit_cmab])
def test_the_weighted_value_wins_not_the_conversion_count(fit: Fit) -> None:
    rng = np.random.default_rng(20)
    weighted_best, count_best = [], []
    for seed in range(SIMULATIONS):
        weighted, converted = simulate(rng)
        on_weights = summarize(fit(weighted, (3,), "numeric"), n_draws=500, seed=seed)
        on_counts = summarize(fit(converted, (3,), "bool"), n_draws=500, seed=seed)
        weighted_best.append(int(np.argmax(on_weights.prob_best)) + 1)
        count_best.append(int(np.argmax(on_counts.prob_best)) + 1)
    # B's margin is ≈ 4 standard errors at 600 exposures per arm: it wins essentially always.
    assert weighted_best.count(3) >= SIMULATIONS - 1, weighted_best
    assert count_best.count(2) == SIMULATIONS, count_best
