"""Frequentist calibration of the posterior intervals (issue 6 item 6): over repeated
simulations with known truth, the 95 % credible intervals of each variant's expected reward
cover the truth 93–97 % of the time. Seeds are fixed, so the check is reproducible; with
1,800+ intervals per model the Monte Carlo standard error of the coverage is about 0.5 %."""

from __future__ import annotations

import numpy as np
import pytest

from levered.bandit.cells import Cells
from levered.bandit.glm import fit_cmab
from levered.bandit.mab import fit_mab
from levered.bandit.results import summarize

REPS = 300


def _coverage(hits: int, total: int) -> float:
    return hits / total


def test_mab_bool_intervals_cover_95_percent() -> None:
    truth = np.array([0.03, 0.05, 0.08, 0.12, 0.2, 0.35])
    rng = np.random.default_rng(11)
    hits = total = 0
    for rep in range(REPS):
        n = rng.integers(200, 800, size=truth.size).astype(float)
        successes = rng.binomial(n.astype(int), truth).astype(float)
        cells = Cells.of(np.arange(1, truth.size + 1), n, successes)
        results = summarize(fit_mab(cells, [truth.size], "bool"), n_draws=1000, seed=rep)
        for interval, p in zip(results.expected_reward, truth, strict=True):
            hits += interval.lo <= p <= interval.hi
            total += 1
    assert 0.93 <= _coverage(hits, total) <= 0.97


def test_mab_numeric_intervals_cover_95_percent() -> None:
    means = np.array([1.0, 1.5, 2.0, 4.0, 10.0, 12.5])
    sds = np.array([0.5, 2.0, 1.0, 3.0, 5.0, 1.0])
    rng = np.random.default_rng(12)
    hits = total = 0
    for rep in range(REPS):
        n = rng.integers(30, 300, size=means.size)
        samples = [rng.normal(m, s, size=k) for m, s, k in zip(means, sds, n, strict=True)]
        cells = Cells.of(
            np.arange(1, means.size + 1),
            n.astype(float),
            [x.sum() for x in samples],
            [(x**2).sum() for x in samples],
        )
        results = summarize(fit_mab(cells, [means.size], "numeric"), n_draws=1000, seed=rep)
        for interval, m in zip(results.expected_reward, means, strict=True):
            hits += interval.lo <= m <= interval.hi
            total += 1
    assert 0.93 <= _coverage(hits, total) <= 0.97


@pytest.mark.slow
def test_cmab_bool_intervals_cover_95_percent() -> None:
    """A 3 × 2 design whose truth is additive on the logit scale (what the main effects model;
    the interaction terms are shrunk towards the true zero)."""
    headline = np.array([0.0, 0.4, -0.3])
    cta = np.array([0.0, 0.5])
    levels = [(h, c) for h in range(3) for c in range(2)]  # variant order: first factor major
    truth = np.array([1 / (1 + np.exp(-(-2.5 + headline[h] + cta[c]))) for h, c in levels])
    rng = np.random.default_rng(13)
    hits = total = 0
    for rep in range(REPS):
        n = rng.integers(1500, 4000, size=truth.size).astype(float)
        successes = rng.binomial(n.astype(int), truth).astype(float)
        cells = Cells.of(np.arange(1, truth.size + 1), n, successes)
        posterior = fit_cmab(cells, [3, 2], "bool")
        results = summarize(posterior, n_draws=1000, seed=rep)
        for interval, p in zip(results.expected_reward, truth, strict=True):
            hits += interval.lo <= p <= interval.hi
            total += 1
    assert 0.93 <= _coverage(hits, total) <= 0.97
