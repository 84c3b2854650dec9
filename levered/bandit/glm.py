"""Contextual model: one Bayesian GLM shared by all variants, fit by Laplace approximation.

Features and priors are those of :mod:`levered.bandit.design`. Likelihoods, on the cells:

- bool — binomial-logistic: successes_i ~ Binomial(n_i, σ(x_iᵀθ)). Newton–Raphson (IRLS) on the
  log posterior; each step solves (XᵀWX + Λ) δ = Xᵀ(s − n p) − Λθ with W = diag(n p (1 − p)),
  Λ = diag(1/prior_sd²), halving the step until the log posterior rises.
- numeric — Gaussian: y ~ N(x_iᵀθ, σ²) on the standardized reward. Σy and Σy² per cell give the
  residual sum of squares Σ_i (Σy²_i − 2 η_i Σy_i + n_i η_i²) for any η, so the fit never sees
  events. Given σ² the posterior is exactly Gaussian; σ² is estimated by alternating with its
  conditional mode under a weak scaled-inverse-χ²(1, 1) prior (a profile/EM-style fit).

The Laplace approximation (Bishop, PRML §4.4; BDA3 §4.1) takes θ ~ N(θ̂, H⁻¹) with θ̂ the MAP and
H the negative Hessian of the log posterior at θ̂. We store θ̂ and the lower Cholesky factor L of
H⁻¹ (L Lᵀ = H⁻¹), so the sampler draws θ = θ̂ + L z with z ~ N(0, I).

XᵀWX is accumulated from each cell's active columns (every feature is 0/1), so a fit costs
O(cells · k²) for k active columns per cell plus O(p³) for the factorization.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from levered.bandit.cells import Cells
from levered.bandit.design import MIN_CONTEXT_COUNT, Design, context_vocabulary
from levered.bandit.posterior import Posterior, make_posterior
from levered.bandit.scales import MAX_FEATURES, learn_scales, table_shapes

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MAX_ITER = 100
TOL = 1e-8


@njit(cache=True, nogil=True)
def linear_predictor(active: I64, theta: F64) -> F64:
    """η_i = Σ_j θ[active[i, j]] over the row's active columns (−1 = padding)."""
    n, k = active.shape
    out = np.zeros(n)
    for i in range(n):
        acc = 0.0
        for j in range(k):
            c = active[i, j]
            if c >= 0:
                acc += theta[c]
        out[i] = acc
    return out


@njit(cache=True, nogil=True)
def normal_equations(active: I64, weight: F64, target: F64, p: int) -> tuple[F64, F64]:
    """(XᵀWX, Xᵀt) for the 0/1 design whose rows are given by their active columns."""
    n, k = active.shape
    h = np.zeros((p, p))
    g = np.zeros(p)
    for i in range(n):
        w = weight[i]
        t = target[i]
        for a in range(k):
            ca = active[i, a]
            if ca < 0:
                continue
            g[ca] += t
            if w == 0.0:
                continue
            for b in range(k):
                cb = active[i, b]
                if cb >= 0:
                    h[ca, cb] += w
    return h, g


def _lower_cholesky_of_inverse(precision: F64) -> F64:
    r = np.linalg.cholesky(precision)
    r_inv = np.linalg.solve(r, np.eye(r.shape[0]))
    cov = r_inv.T @ r_inv
    cov = (cov + cov.T) / 2.0
    return np.ascontiguousarray(np.linalg.cholesky(cov))


def _solve(a: F64, b: F64) -> F64:
    return np.asarray(np.linalg.solve(a, b), dtype=np.float64)


def _log1pexp(x: F64) -> F64:
    return np.logaddexp(0.0, x)


def fit_logistic(
    active: I64, trials: F64, successes: F64, prior_sd: F64, theta0: F64
) -> tuple[F64, F64, int]:
    """MAP and precision of the binomial-logistic GLM with N(0, prior_sd²) priors."""
    prior_prec = 1.0 / prior_sd**2
    theta = theta0.copy()
    p = theta.shape[0]

    def log_post(th: F64) -> float:
        eta = linear_predictor(active, th)
        return float(
            np.sum(successes * eta - trials * _log1pexp(eta)) - 0.5 * np.sum(prior_prec * th**2)
        )

    current = log_post(theta)
    iterations = 0  # reported to the caller
    while iterations < MAX_ITER:
        iterations += 1
        eta = linear_predictor(active, theta)
        prob = 1.0 / (1.0 + np.exp(-eta))
        h, g = normal_equations(active, trials * prob * (1.0 - prob), successes - trials * prob, p)
        h[np.diag_indices(p)] += prior_prec
        step = _solve(h, g - prior_prec * theta)
        scale = 1.0
        while True:
            candidate = theta + scale * step
            value = log_post(candidate)
            if value >= current - 1e-12 or scale < 1e-6:
                break
            scale /= 2.0
        theta, previous, current = candidate, current, value
        if np.max(np.abs(scale * step)) < TOL or abs(current - previous) < TOL * (
            1.0 + abs(current)
        ):
            break
    eta = linear_predictor(active, theta)
    prob = 1.0 / (1.0 + np.exp(-eta))
    h, _ = normal_equations(active, trials * prob * (1.0 - prob), np.zeros_like(eta), p)
    h[np.diag_indices(p)] += prior_prec
    return theta, h, iterations


def fit_gaussian(
    active: I64, count: F64, ysum: F64, ysumsq: F64, prior_sd: F64
) -> tuple[F64, F64, float, int]:
    """Posterior mean, precision and noise variance of the Gaussian GLM (standardized y)."""
    prior_prec = 1.0 / prior_sd**2
    p = prior_sd.shape[0]
    xtx, xty = normal_equations(active, count, ysum, p)
    total = float(count.sum())
    sigma2 = 1.0
    iterations = 0  # reported to the caller
    while iterations < MAX_ITER:
        iterations += 1
        precision = xtx / sigma2
        precision[np.diag_indices(p)] += prior_prec
        theta = _solve(precision, xty / sigma2)
        eta = linear_predictor(active, theta)
        rss = float(np.sum(ysumsq - 2.0 * eta * ysum + count * eta * eta))
        new = max((max(rss, 0.0) + 1.0) / (total + 1.0), 1e-12)
        done = abs(new - sigma2) < 1e-10 * (1.0 + sigma2)
        sigma2 = new
        if done:
            break
    precision = xtx / sigma2
    precision[np.diag_indices(p)] += prior_prec
    return _solve(precision, xty / sigma2), precision, sigma2, iterations


TRAFFIC_MIX_CONTEXTS = 10


def traffic_mix(cells: Cells, top: int = TRAFFIC_MIX_CONTEXTS) -> list[list[Any]]:
    """The most frequent context cells with their exposure counts, ``[[context, count], …]``
    (``{}`` for no context): what "the population" means in results. Averaging predictions
    over the observed mix, instead of reading the no-context prediction, matters because the
    intercept and a fully observed context factor's one-hot columns are collinear: with every
    exposure carrying a known device, the no-context prediction is pinned only by the prior."""
    totals: dict[int, float] = {}
    for index, count in zip(cells.context_index.tolist(), cells.count.tolist(), strict=True):
        totals[index] = totals.get(index, 0.0) + count
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [
        [dict(cells.contexts[i]) if i >= 0 else {}, float(count)]
        for i, count in ranked
        if count > 0
    ]


def fit_cmab(
    cells: Cells,
    level_counts: tuple[int, ...] | list[int],
    reward_type: str,
    min_context_count: float = MIN_CONTEXT_COUNT,
) -> Posterior:
    """Laplace posterior of the shared GLM on the cells (see the module docstring)."""
    vocab = context_vocabulary(cells, min_context_count)
    design = Design(tuple(int(k) for k in level_counts), vocab)
    meta: dict[str, object] = {"coding": design.coding}
    if cells.size and int(cells.variant_number.max()) > design.n_variants:
        raise ValueError(f"a cell's variant number exceeds the space size {design.n_variants}")
    keep = cells.count > 0
    active = np.ascontiguousarray(design.cell_columns(cells)[keep])
    n = np.ascontiguousarray(cells.count[keep])
    s = np.ascontiguousarray(cells.reward_sum[keep])
    q = np.ascontiguousarray(cells.reward_sumsq[keep])
    total = float(n.sum())
    meta.update({"exposures": total, "reward_sum": float(s.sum())})
    meta["cells"] = int(active.shape[0])
    meta["features"] = design.n_features
    meta["traffic_mix"] = traffic_mix(cells)
    if reward_type == "bool":
        if np.any(s < 0) or np.any(s > n + 1e-9):
            raise ValueError("bool rewards need 0 ≤ successes ≤ count in every cell")
        theta0 = np.zeros(design.n_features)
        rate = (float(s.sum()) + 0.5) / (total + 1.0)
        theta0[design.intercept] = np.log(rate / (1.0 - rate))

        def logistic_fit(sd: F64) -> tuple[F64, F64]:
            th, h, _ = fit_logistic(active, n, s, sd, theta0)
            return th, h

        design = _learned(design, logistic_fit, total, meta)
        theta, precision, iters = fit_logistic(active, n, s, design.prior_sd, theta0)
        meta["iterations"] = iters
        return make_posterior(
            "laplace_logistic",
            "bool",
            design.level_counts,
            {"mean": theta, "chol": _lower_cholesky_of_inverse(precision)},
            context_vocab=list(vocab),
            meta=meta,
        )
    if reward_type != "numeric":
        raise ValueError(f"unknown reward type {reward_type!r}")
    y_mean = float(s.sum()) / total if total > 0 else 0.0
    var = float(q.sum()) / total - y_mean**2 if total > 0 else 1.0
    y_scale = float(np.sqrt(var)) if var > 1e-12 else 1.0
    zs = (s - n * y_mean) / y_scale
    zq = (q - 2.0 * y_mean * s + n * y_mean**2) / y_scale**2

    def gaussian_fit(sd: F64) -> tuple[F64, F64]:
        th, h, _, _ = fit_gaussian(active, n, zs, zq, sd)
        return th, h

    design = _learned(design, gaussian_fit, total, meta)
    theta, precision, sigma2, iters = fit_gaussian(active, n, zs, zq, design.prior_sd)
    meta["iterations"] = iters
    meta["noise_sd"] = float(np.sqrt(sigma2)) * y_scale
    return make_posterior(
        "laplace_gaussian",
        "numeric",
        design.level_counts,
        {"mean": theta, "chol": _lower_cholesky_of_inverse(precision)},
        context_vocab=list(vocab),
        y_mean=y_mean,
        y_scale=y_scale,
        meta=meta,
    )


def _learned(
    design: Design,
    fit: Callable[[F64], tuple[F64, F64]],
    total: float,
    meta: dict[str, object],
) -> Design:
    """The design with block scales learned by empirical Bayes (:mod:`levered.bandit.scales`),
    recorded in ``meta["prior_scales"]``; without data, or for very large spaces, the defaults."""
    blocks = design.blocks()
    source = "defaults"
    if total > 0 and design.n_features <= MAX_FEATURES and blocks:
        learned = learn_scales(fit, design.prior_sd, blocks, table_shapes(design))
        design = Design(
            design.level_counts, design.context_vocab, design.coding, tuple(learned.items())
        )
        source = "empirical_bayes"
    meta["prior_scales"] = {name: float(design.prior_sd[cols][0]) for name, cols in blocks}
    meta["prior_scales_source"] = source
    return design


def design_of(posterior: Posterior) -> Design:
    """The column layout a cmab posterior was fitted with. Posteriors from before exchangeable
    coding have no ``coding`` in their meta: they were reference coded with the default scales."""
    coding = str(posterior.meta.get("coding", "reference"))
    stored = posterior.meta.get("prior_scales")
    scales = (
        tuple((str(k), float(v)) for k, v in stored.items()) if isinstance(stored, dict) else ()
    )
    return Design(
        tuple(posterior.level_counts),
        tuple((n, v) for n, v in posterior.context_vocab),
        coding,
        scales,
    )
