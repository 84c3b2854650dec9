"""The numeric parts of results (docs/training.md), all computed from joint posterior draws.

Every figure is a functional of the posterior of the variants' expected rewards, so one set of
draws r[s, v] (reward scale: probabilities for bool — the linear predictor passed through the
logistic — reward units for numeric) gives them all consistently:

- expected reward: posterior mean and the 2.5 % / 97.5 % quantiles (95 % credible interval);
- prob_best: the share of draws in which the variant is the best allowed one — exactly the
  Thompson allocation (Chapelle & Li 2011), so ``weight = prob_best × (1 − holdout)`` is the
  traffic share of each variant;
- factor importance: a variance decomposition of r over the full factorial grid in each draw
  (functional ANOVA / first-order Sobol indices, Saltelli et al. 2008): factor f explains
  Var_l(E[r | l_f = l]) / Var(r); a pair explains its second-order term; interaction
  importance is 1 − Σ_f S_f. Reported as posterior mean, q1, q3 over draws; per-level effects
  are E[r | l_f = l] − E[r | l_f = 0] with 95 % intervals;
- context importance (cmab): for each context factor, a two-way decomposition of r over
  (known value, variant): the share from the value itself, from value × design and from the
  design alone, adding up to 1 in each draw. Its denominator is the variance over (value,
  variant) cells, not over variants, so a context share is never added to the design
  factors' shares (those, with the interaction share, add up to 1 on their own);
- modeled improvement: the prob_best-weighted reward (current allocation) and the reward of the
  variant with the highest posterior mean, each relative to the baseline (variant 1), per draw.

For cmab the draws behind every figure but prob_best come from the posterior with the learned
prior scales' uncertainty added (:func:`reported_chol`; docs/statistics.md, "Intervals that
account for the learned scales"), because the plug-in posterior's intervals were too narrow
where the data barely determine a scale (measured: benchmarks/README.md, "Calibration").
prob_best (and so weight and estimated_progress) stays a functional of the posterior the
sampler draws from, with the same z, so it remains the traffic share served.

Draw counts shrink for huge spaces so that draws × variants stays under ``MAX_CELLS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from levered.bandit.bias import row_scale
from levered.bandit.design import levels_matrix
from levered.bandit.glm import design_of
from levered.bandit.posterior import Posterior
from levered.bandit.scales import scale_averaged_covariance

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

MAX_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Spread:
    mean: float
    q1: float
    q3: float


@dataclass(frozen=True)
class FactorImportance:
    factor: int
    importance: Spread
    level_effects: list[Interval]  # per level, vs the factor's first level (effect 0)


@dataclass(frozen=True)
class Results:
    expected_reward: list[Interval]  # per variant, index = number − 1
    prob_best: F64
    weight: F64
    factor_importance: list[FactorImportance]
    interaction_importance: Spread
    pair_importance: dict[tuple[int, int], Spread]
    context_importance: dict[str, dict[str, Spread]]
    estimated_improvement_percent: Interval | None
    best_vs_baseline_percent: Interval | None
    estimated_progress: float
    draws: int


def _interval(x: F64) -> Interval:
    lo, hi = np.quantile(x, [0.025, 0.975])
    return Interval(float(np.mean(x)), float(lo), float(hi))


def _spread(x: F64) -> Spread:
    q1, q3 = np.quantile(x, [0.25, 0.75])
    return Spread(float(np.mean(x)), float(q1), float(q3))


def reward_draws(
    posterior: Posterior,
    n_draws: int,
    rng: np.random.Generator,
    context: Mapping[str, Any] | None = None,
) -> F64:
    """Joint draws (n_draws, variants) of each variant's expected reward for a context
    (None: the population model)."""
    if posterior.kind == "beta":
        a, b = posterior.array("alpha"), posterior.array("beta")
        return rng.beta(a, b, size=(n_draws, a.shape[0]))
    if posterior.kind == "nig":
        mu, kappa, alpha, beta = (posterior.array(k) for k in ("mu", "kappa", "alpha", "beta"))
        sigma2 = beta / rng.gamma(alpha, 1.0, size=(n_draws, mu.shape[0]))
        return mu + np.sqrt(sigma2 / kappa) * rng.standard_normal((n_draws, mu.shape[0]))
    theta = theta_draws(posterior, n_draws, rng)
    return linear_to_reward(posterior, linear_predictor_draws(posterior, theta, context))


def theta_draws(
    posterior: Posterior, n_draws: int, rng: np.random.Generator, chol: F64 | None = None
) -> F64:
    """θ = θ̂ + L z, with the posterior's own L (what the sampler draws) unless given."""
    mean = posterior.array("mean")
    factor = posterior.array("chol") if chol is None else chol
    z = rng.standard_normal((n_draws, mean.shape[0]))
    return np.asarray(mean + z @ factor.T, dtype=np.float64)


def reported_chol(posterior: Posterior) -> F64:
    """The Cholesky factor results draw from: the posterior's covariance with the learned
    prior scales' uncertainty integrated out (:func:`levered.bandit.scales.
    scale_averaged_covariance`), widened by the exploration bias like the posterior itself
    (Σ' = DΣD, :mod:`levered.bandit.bias`). The posterior's own factor when no scale was
    learned (defaults, legacy versions)."""
    chol = posterior.array("chol")
    if posterior.meta.get("prior_scales_source") != "empirical_bayes":
        return chol
    d = design_of(posterior)
    bias = posterior.meta.get("bias")
    rows = row_scale(d, bias) if bias else np.ones(d.n_features)
    base = chol / rows[:, None]
    cov, _ = scale_averaged_covariance(d, posterior.array("mean"), base @ base.T)
    return np.ascontiguousarray(rows[:, None] * np.linalg.cholesky(cov))


def linear_predictor_draws(
    posterior: Posterior, theta: F64, context: Mapping[str, Any] | None
) -> F64:
    """η[s, v] for every variant, from level indices (no variant × feature matrix)."""
    d = design_of(posterior)
    grid = levels_matrix(d.level_counts)
    cols = d.context_columns(context)
    padded = np.concatenate([theta, np.zeros((theta.shape[0], 1))], axis=1)  # column −1 → 0
    eta = np.repeat(padded[:, [d.intercept]], grid.shape[0], axis=1)
    for f in range(grid.shape[1]):
        eta += padded[:, d.main_idx[f]][:, grid[:, f]]
        for c in cols:
            eta += padded[:, d.cd_idx[c, f]][:, grid[:, f]]
    for p in range(d.pair_f.size):
        flat = d.pair_idx[p][grid[:, d.pair_f[p]], grid[:, d.pair_g[p]]]
        eta += padded[:, flat]
    for c in cols:
        eta += padded[:, [d.ctx_main_idx[c]]]
    return np.asarray(eta, dtype=np.float64)


def population_draws(posterior: Posterior, theta: F64) -> F64:
    """Expected reward draws for the observed traffic mix: the count-weighted average of the
    per-context predictions (glm.traffic_mix); the no-context prediction when no mix is known."""
    mix = posterior.meta.get("traffic_mix") or []
    if not any(context for context, _ in mix):
        return linear_to_reward(posterior, linear_predictor_draws(posterior, theta, None))
    total = sum(float(count) for _, count in mix)
    out = np.zeros((theta.shape[0], posterior.n_variants))
    for context, count in mix:
        eta = linear_predictor_draws(posterior, theta, context or None)
        out += (float(count) / total) * linear_to_reward(posterior, eta)
    return out


def _rewards(posterior: Posterior, theta: F64, context: Mapping[str, Any] | None) -> F64:
    if context is None:
        return population_draws(posterior, theta)
    return linear_to_reward(posterior, linear_predictor_draws(posterior, theta, context))


def linear_to_reward(posterior: Posterior, eta: F64) -> F64:
    if posterior.reward_type == "bool":
        return np.asarray(1.0 / (1.0 + np.exp(-eta)), dtype=np.float64)
    return np.asarray(posterior.y_mean + posterior.y_scale * eta, dtype=np.float64)


def prob_best(draws: F64, allowed: B) -> F64:
    """Share of draws in which each variant is the best allowed one."""
    winners = np.argmax(np.where(allowed[None, :], draws, -np.inf), axis=1)
    counts = np.bincount(winners, minlength=draws.shape[1])
    return np.asarray(counts / draws.shape[0], dtype=np.float64)


def _grid(draws: F64, level_counts: list[int]) -> F64:
    return draws.reshape(draws.shape[0], *level_counts)


def factor_importance(
    draws: F64, level_counts: list[int]
) -> tuple[list[FactorImportance], Spread, dict[tuple[int, int], Spread]]:
    """First- and second-order variance shares of each draw's reward surface."""
    grid = _grid(draws, level_counts)
    n_f = len(level_counts)
    total = draws.var(axis=1)
    total = np.where(total > 0, total, np.inf)
    axes = set(range(1, n_f + 1))
    out: list[FactorImportance] = []
    first: list[F64] = []
    marginal_var: list[F64] = []
    for f in range(n_f):
        m = grid.mean(axis=tuple(axes - {f + 1}))  # (S, K_f)
        v = m.var(axis=1)
        marginal_var.append(v)
        first.append(v / total)
        effects = [_interval(m[:, lv] - m[:, 0]) for lv in range(level_counts[f])]
        out.append(FactorImportance(f, _spread(v / total), effects))
    pairs: dict[tuple[int, int], Spread] = {}
    for f in range(n_f):
        for g in range(f + 1, n_f):
            m = grid.mean(axis=tuple(axes - {f + 1, g + 1}))
            v = m.reshape(m.shape[0], -1).var(axis=1) - marginal_var[f] - marginal_var[g]
            pairs[(f, g)] = _spread(np.maximum(v, 0.0) / total)
    interaction = np.clip(1.0 - np.sum(first, axis=0), 0.0, 1.0)
    return out, _spread(interaction), pairs


def context_importance(posterior: Posterior, theta: F64) -> dict[str, dict[str, Spread]]:
    """Per context factor: shares of Var over (known value, variant) from the value
    (``context``), from value × design (``interaction``), their sum (``total``) and the rest,
    the design alone (``design``): one decomposition, ``total`` + ``design`` = 1."""
    by_factor: dict[str, list[Any]] = {}
    for name, value in posterior.context_vocab:
        by_factor.setdefault(name, []).append(value)
    out: dict[str, dict[str, Spread]] = {}
    for name, values in by_factor.items():
        r = np.stack(
            [
                linear_to_reward(posterior, linear_predictor_draws(posterior, theta, {name: v}))
                for v in values
            ],
            axis=1,
        )  # (S, C, V)
        total = r.reshape(r.shape[0], -1).var(axis=1)
        total = np.where(total > 0, total, np.inf)
        ctx = r.mean(axis=2).var(axis=1) / total
        design = r.mean(axis=1).var(axis=1) / total
        inter = np.clip(1.0 - ctx - design, 0.0, 1.0)
        out[name] = {
            "total": _spread(ctx + inter),
            "context": _spread(ctx),
            "interaction": _spread(inter),
            "design": _spread(1.0 - ctx - inter),
        }
    return out


def _relative(numerator: F64, baseline: F64) -> Interval | None:
    if np.any(baseline <= 1e-12):
        return None
    return _interval(100.0 * (numerator - baseline) / baseline)


def summarize(
    posterior: Posterior,
    allowed: B | None = None,
    holdout_fraction: float = 0.0,
    n_draws: int = 2000,
    seed: int = 0,
    context: Mapping[str, Any] | None = None,
) -> Results:
    """Every numeric result (docs/training.md, "Results") that comes from the model, for one context
    (None: the population model; unseen context values fall back to it, as when serving).
    ``mab`` ignores context."""
    n_variants = posterior.n_variants
    mask = np.ones(n_variants, np.bool_) if allowed is None else np.asarray(allowed, np.bool_)
    s = max(100, min(n_draws, MAX_CELLS // max(n_variants, 1)))
    rng = np.random.default_rng(seed)
    theta = None
    if posterior.model_type == "cmab":
        # Common random numbers: the sampler's θ̂ + L z and the reported θ̂ + L̄ z share z.
        state = rng.bit_generator.state
        served = theta_draws(posterior, s, rng)
        rng.bit_generator.state = state
        theta = theta_draws(posterior, s, rng, reported_chol(posterior))
        draws = _rewards(posterior, theta, context)
        serving = _rewards(posterior, served, context)
    else:
        draws = serving = reward_draws(posterior, s, rng)
    pb = prob_best(serving, mask)
    factors, interaction, pairs = factor_importance(draws, posterior.level_counts)
    means = draws.mean(axis=0)
    best = int(np.flatnonzero(mask)[np.argmax(means[mask])])
    baseline = draws[:, 0]
    # Without a single exposure the relative figures are pure prior spread; a lift read off them
    # ("+33 % vs baseline" on no data) would be a claim the data never made: report none.
    no_data = float(posterior.meta.get("exposures", 1.0)) <= 0.0
    return Results(
        expected_reward=[_interval(draws[:, v]) for v in range(n_variants)],
        prob_best=pb,
        weight=pb * (1.0 - holdout_fraction),
        factor_importance=factors,
        interaction_importance=interaction,
        pair_importance=pairs,
        context_importance={} if theta is None else context_importance(posterior, theta),
        estimated_improvement_percent=None if no_data else _relative(draws @ pb, baseline),
        best_vs_baseline_percent=None if no_data else _relative(draws[:, best], baseline),
        estimated_progress=float(pb.max()),
        draws=s,
    )
