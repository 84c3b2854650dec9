"""Exploration bias: widen a fitted posterior around the same mean, per design factor.

``POST /api/v2/models/{id}/train`` takes ``bias`` = {factor: b_f} with 0 ≤ b_f ≤ ``MAX_BIAS`` (10).
Thompson sampling explores in proportion to posterior spread, so inflating the spread of what
a factor contributes makes the sampler try that factor's levels more, while every posterior
mean — hence every expected reward — stays where the data put it.

cmab (Laplace posterior θ ~ N(μ, Σ), Σ = L Lᵀ): the covariance of every coefficient that
involves factor f — its main-effect columns, its context × design columns — is inflated by
s_f² with s_f = 1 + b_f, and a pair column of factors f and g by (s_f s_g)². Done by scaling
row i of L by s_i: L' = D L with D = diag(s) is still lower triangular (the sampler's
row-prefix draws keep working) and L' L'ᵀ = D Σ D, i.e. Σ'_ij = s_i s_j Σ_ij — each coefficient's
sd grows by its s_i and correlations are unchanged. The intercept and context main effects
(constant across variants) keep s = 1.

mab (independent arms): every arm involves every factor, so one inflation applies to all arms,
the largest: s = (1 + max_f b_f)², the factor by which the variance of each arm's mean grows —
exactly, unless it would make the arm less certain than its prior (then the prior's width):

- Beta(α, β), mean m = α/n, n = α + β, Var = m(1 − m)/(n + 1): keep m, set the concentration
  n' = (n + 1)/s − 1, floored at min(n, 2) (the uniform prior's; below that the Beta turns
  U-shaped, and n' ≤ 0 is no distribution at all).
- Normal-Inverse-Gamma (μ, κ, α, β): the mean's scale² is β/(ακ); κ' = κ/s, floored at
  min(κ, κ₀). Every Thompson draw μ + √(σ²/κ') z is μ + √s · (the unbiased draw's deviation).

Zero bias returns the posterior unchanged. The biased posterior records ``meta["bias"]``
(per factor, design order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

from levered.bandit.design import Design
from levered.bandit.glm import design_of
from levered.bandit.mab import KAPPA0
from levered.bandit.posterior import ArrayData, Posterior
from levered.schemas.models import MAX_BIAS

F64 = npt.NDArray[np.float64]

BETA_MIN_CONCENTRATION: Final = 2.0
"""Beta(1, 1), the mab prior: a biased Beta arm is never wider than this."""


def row_scale(design: Design, bias: Sequence[float]) -> F64:
    """s_i per GLM column: 1 + b_f for f's main and context × design columns, (1 + b_f)(1 + b_g)
    for pair columns of f and g, 1 for the intercept and context main effects."""
    if len(bias) != len(design.level_counts):
        raise ValueError(f"bias needs one value per design factor ({len(design.level_counts)})")
    factor = 1.0 + np.asarray(bias, dtype=np.float64)
    scale = np.ones(design.n_features)
    for f, k in enumerate(design.level_counts):
        main = design.main_idx[f, design.first_level : k]
        scale[main] = factor[f]
        cd = design.cd_idx[:, f, design.first_level : k].ravel()
        scale[cd[cd >= 0]] = factor[f]
    for p in range(design.pair_f.size):
        f, g = int(design.pair_f[p]), int(design.pair_g[p])
        cols = design.pair_idx[p].ravel()
        scale[cols[cols >= 0]] = factor[f] * factor[g]
    return scale


def arm_variance_scale(bias: Sequence[float]) -> float:
    """mab: s = (1 + max_f b_f)², the inflation of each arm's mean variance."""
    return (1.0 + max(bias, default=0.0)) ** 2


def apply_bias(posterior: Posterior, bias: Sequence[float]) -> Posterior:
    """The posterior with its spread inflated by ``bias`` (one b_f ≥ 0 per design factor, in
    design order) and its means unchanged; see the module docstring."""
    values = [float(b) for b in bias]
    if len(values) != len(posterior.level_counts):
        raise ValueError(f"bias needs one value per design factor ({len(posterior.level_counts)})")
    if not all(0.0 <= b <= MAX_BIAS for b in values):  # also rejects NaN
        raise ValueError(f"every bias must be a number in [0, {MAX_BIAS:g}]")
    if not any(values):
        return posterior
    arrays = dict(posterior.arrays)
    if posterior.kind == "beta":
        alpha, beta = posterior.array("alpha"), posterior.array("beta")
        alpha, beta = _widen_beta(alpha, beta, arm_variance_scale(values))
        arrays["alpha"], arrays["beta"] = ArrayData.of(alpha), ArrayData.of(beta)
    elif posterior.kind == "nig":
        kappa = posterior.array("kappa")
        floor = np.minimum(kappa, KAPPA0)
        arrays["kappa"] = ArrayData.of(np.maximum(kappa / arm_variance_scale(values), floor))
    else:
        scale = row_scale(design_of(posterior), values)
        arrays["chol"] = ArrayData.of(scale[:, None] * posterior.array("chol"))
    return msgspec.structs.replace(
        posterior, arrays=arrays, meta={**posterior.meta, "bias": values}
    )


def _widen_beta(alpha: F64, beta: F64, s: float) -> tuple[F64, F64]:
    n = alpha + beta
    mean = alpha / n
    concentration = np.maximum((n + 1.0) / s - 1.0, np.minimum(n, BETA_MIN_CONCENTRATION))
    return mean * concentration, (1.0 - mean) * concentration
