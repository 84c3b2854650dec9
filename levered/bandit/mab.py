"""Non-contextual model: one independent conjugate posterior per variant.

Bool rewards — Beta–Bernoulli: with a uniform Beta(1, 1) prior the posterior of variant v's
conversion rate is Beta(1 + successes_v, 1 + failures_v).

Numeric rewards — Normal with unknown mean and variance, Normal-Inverse-Gamma conjugate prior
(Gelman et al., BDA3 §3.3): μ | σ² ~ N(μ₀, σ²/κ₀), σ² ~ Inv-Gamma(α₀, β₀). From a cell's count
n, Σy and Σy², with ȳ = Σy/n and SS = Σy² − n ȳ²:

    κₙ = κ₀ + n,  μₙ = (κ₀ μ₀ + n ȳ) / κₙ,  αₙ = α₀ + n/2,
    βₙ = β₀ + SS/2 + κ₀ n (ȳ − μ₀)² / (2 κₙ),

and the marginal posterior of the mean is Student-t with 2αₙ degrees of freedom, location μₙ
and scale √(βₙ / (αₙ κₙ)). The prior is weak and centred on the data: μ₀ = pooled mean,
κ₀ = 0.01 pseudo-observations, α₀ = 1, β₀ = the pooled *within-variant* variance — scale-free,
so dollars and seconds behave alike, and an unseen variant is a wide t around the pooled mean.
Both choices matter for calibration: with κ₀ = 1 the prior–data conflict term
κ₀ n (ȳ − μ₀)² / (2κₙ) and a β₀ that includes the spread *between* variants inflated the
noise of variants far from the pooled mean, and 95 % intervals covered 97 % in repeated
simulations (tests/unit/test_bandit_coverage.py); now they cover ≈ 95 %.

Context is ignored (pooled per variant): contextual learning is what ``cmab`` is for.
"""

from __future__ import annotations

import numpy as np

from levered.bandit.cells import Cells
from levered.bandit.posterior import Posterior, make_posterior

KAPPA0 = 0.01
ALPHA0 = 1.0


def fit_mab(cells: Cells, level_counts: tuple[int, ...] | list[int], reward_type: str) -> Posterior:
    """Per-variant conjugate posterior from the cells (contexts pooled)."""
    n_variants = int(np.prod(level_counts))
    n, s, q = cells.per_variant(n_variants)
    meta = {"exposures": float(n.sum()), "reward_sum": float(s.sum()), "cells": cells.size}
    if reward_type == "bool":
        if np.any(s < 0) or np.any(s > n + 1e-9):
            raise ValueError("bool rewards need 0 ≤ successes ≤ count in every cell")
        alpha = 1.0 + s
        beta = 1.0 + np.maximum(n - s, 0.0)
        return make_posterior(
            "beta", "bool", level_counts, {"alpha": alpha, "beta": beta}, meta=meta
        )
    if reward_type != "numeric":
        raise ValueError(f"unknown reward type {reward_type!r}")
    total = float(n.sum())
    mu0 = float(s.sum()) / total if total > 0 else 0.0
    safe_n = np.where(n > 0, n, 1.0)
    ybar = np.where(n > 0, s / safe_n, mu0)
    ss = np.maximum(q - n * ybar * ybar, 0.0)
    seen = int((n > 0).sum())
    within_var = float(ss.sum()) / (total - seen) if total - seen > 0 else 0.0
    beta0 = ALPHA0 * within_var if within_var > 1e-12 else 1.0
    kappa = KAPPA0 + n
    mu = (KAPPA0 * mu0 + n * ybar) / kappa
    alpha = ALPHA0 + n / 2.0
    beta = beta0 + ss / 2.0 + KAPPA0 * n * (ybar - mu0) ** 2 / (2.0 * kappa)
    return make_posterior(
        "nig",
        "numeric",
        level_counts,
        {"mu": mu, "kappa": kappa, "alpha": alpha, "beta": beta},
        meta=meta,
    )
