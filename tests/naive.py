"""Plain-Python twins of the bandit kernels and of attribution: obvious, slow, from definitions.

Tests compare each numba kernel (and each index-table shortcut) with its twin here. The twins
build the dense design matrix feature by feature from the column order documented in
``levered.bandit.design``, score variants by a matrix product, and fit GLMs by dense Newton
steps, so they share no code path with the kernels beyond that documented order.

:func:`naive_attribution` is last touch by brute force over a list of events: what the SQL of
``levered.db.attribution`` / ``levered.db.cell_passes`` and the stored cells must agree with.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def levels(level_counts: Sequence[int]) -> npt.NDArray[np.int64]:
    """Level indices of every variant in numbering order (itertools.product is mixed radix with
    the first factor most significant, like the variant numbering)."""
    return np.array(list(itertools.product(*(range(k) for k in level_counts))), dtype=np.int64)


def feature_names(
    level_counts: Sequence[int], vocab: Sequence[tuple[str, Any]], first: int = 0
) -> list[tuple[Any, ...]]:
    """Feature identities in the documented column order (``first`` = 1: the legacy reference
    coding, level 0 without a column)."""
    n_f = len(level_counts)
    names: list[tuple[Any, ...]] = []
    names += [("main", f, lv) for f in range(n_f) for lv in range(first, level_counts[f])]
    for f in range(n_f):
        for g in range(f + 1, n_f):
            names += [
                ("pair", f, g, a, b)
                for a in range(first, level_counts[f])
                for b in range(first, level_counts[g])
            ]
    for c in range(len(vocab)):
        names += [("cd", c, f, lv) for f in range(n_f) for lv in range(first, level_counts[f])]
    names.append(("intercept",))
    names += [("ctx", c) for c in range(len(vocab))]
    return names


def context_positions(
    vocab: Sequence[tuple[str, Any]], context: Mapping[str, Any] | None
) -> set[int]:
    out: set[int] = set()
    for name, value in (context or {}).items():
        for c, (vn, vv) in enumerate(vocab):
            if vn == name and type(vv) is type(value) and vv == value:
                out.add(c)
    return out


def design_matrix(
    level_counts: Sequence[int],
    vocab: Sequence[tuple[str, Any]],
    variant_numbers: Sequence[int],
    contexts: Sequence[Mapping[str, Any] | None],
    first: int = 0,
) -> F64:
    """Dense design matrix, one row per (variant number, context) pair, built column by column
    from each feature's definition."""
    names = feature_names(level_counts, vocab, first)
    lv = levels(level_counts)[np.asarray(variant_numbers, dtype=np.int64) - 1]
    ctx = [context_positions(vocab, c) for c in contexts]
    has = np.array([[c in row for c in range(len(vocab))] for row in ctx], dtype=bool)
    has = has.reshape(len(ctx), len(vocab))
    x = np.zeros((lv.shape[0], len(names)))
    for j, name in enumerate(names):
        kind = name[0]
        if kind == "main":
            x[:, j] = lv[:, name[1]] == name[2]
        elif kind == "pair":
            x[:, j] = (lv[:, name[1]] == name[3]) & (lv[:, name[2]] == name[4])
        elif kind == "cd":
            x[:, j] = has[:, name[1]] & (lv[:, name[2]] == name[3])
        elif kind == "intercept":
            x[:, j] = 1.0
        else:
            x[:, j] = has[:, name[1]]
    return x


def glm_choose(
    seed: int,
    mean: F64,
    chol: F64,
    level_counts: Sequence[int],
    vocab: Sequence[tuple[str, Any]],
    context: Mapping[str, Any] | None,
    allowed: npt.NDArray[np.bool_],
) -> int:
    """Thompson decision by the book: θ = μ + L z with numpy's MT19937 normals (numba's stream
    for the same seed), linear scores of every variant, argmax over allowed; returns number."""
    n = int(np.prod(level_counts))
    x = design_matrix(level_counts, vocab, list(range(1, n + 1)), [context] * n)
    return glm_choose_dense(seed, mean, chol, x, allowed)


def glm_choose_dense(
    seed: int, mean: F64, chol: F64, x: F64, allowed: npt.NDArray[np.bool_]
) -> int:
    """:func:`glm_choose` with the variants' design matrix ``x`` for the context precomputed
    (the benchmark's baseline: one matvec for θ, one for the scores)."""
    z = np.random.RandomState(seed).normal(0.0, 1.0, size=mean.shape[0])
    theta = mean + chol @ z
    scores = np.where(allowed, x @ theta, -np.inf)
    return int(np.argmax(scores)) + 1


def argmax_table(table: F64, level_counts: Sequence[int], allowed: npt.NDArray[np.bool_]) -> int:
    """The best allowed variant (0-based; ties: the lower number) of a flattened score table
    — main[f, l] at f·K + l, then pair[p, a, b] at F·K + (p·K + a)·K + b for the pairs f < g in
    order — by scoring every variant, one term at a time in that order (so each score is the
    same float as the kernels')."""
    lv = levels(level_counts)
    n_f, k = len(level_counts), max(level_counts)
    pairs = [(f, g) for f in range(n_f) for g in range(f + 1, n_f)]
    scores = np.zeros(lv.shape[0])
    for f in range(n_f):
        scores += table[f * k + lv[:, f]]
    for p, (f, g) in enumerate(pairs):
        scores += table[n_f * k + (p * k + lv[:, f]) * k + lv[:, g]]
    return int(np.argmax(np.where(allowed, scores, -np.inf)))


def glm_pool_winners(
    seed: int,
    size: int,
    mean: F64,
    chol: F64,
    level_counts: Sequence[int],
    vocab: Sequence[tuple[str, Any]],
    context: Mapping[str, Any] | None,
    allowed: npt.NDArray[np.bool_],
) -> npt.NDArray[np.int64]:
    """A version's pool by the book: ``size`` draws θ = μ + L z with z from
    ``RandomState(seed)`` for every coefficient before the intercept (the rest, constant across
    variants, left at the mean), dense scores of every variant, argmax over allowed; 0-based."""
    n = int(np.prod(level_counts))
    x = design_matrix(level_counts, vocab, list(range(1, n + 1)), [context] * n)
    top = feature_names(level_counts, vocab).index(("intercept",))
    z = np.zeros((size, mean.shape[0]))
    z[:, :top] = np.random.RandomState(seed).standard_normal((size, top))
    thetas = mean + z @ chol.T
    thetas[:, top:] = mean[top:]
    scores = np.where(allowed, thetas @ x.T, -np.inf)
    return np.argmax(scores, axis=1).astype(np.int64)


def mab_draws(rng: np.random.Generator, kind: str, arrays: Mapping[str, F64], size: int) -> F64:
    """``size`` joint posterior draws (rows) of every variant's mean reward."""
    if kind == "beta":
        return rng.beta(arrays["alpha"], arrays["beta"], size=(size, arrays["alpha"].shape[0]))
    mu, kappa, alpha, beta = (arrays[k] for k in ("mu", "kappa", "alpha", "beta"))
    sigma2 = beta / rng.gamma(alpha, 1.0, size=(size, mu.shape[0]))
    return mu + np.sqrt(sigma2 / kappa) * rng.standard_normal((size, mu.shape[0]))


def mab_propensities(
    seed: int, kind: str, arrays: Mapping[str, F64], allowed: npt.NDArray[np.bool_], n: int
) -> F64:
    draws = mab_draws(np.random.default_rng(seed), kind, arrays, n)
    winners = np.argmax(np.where(allowed, draws, -np.inf), axis=1)
    return np.bincount(winners, minlength=allowed.shape[0]) / n


def fit_logistic(x: F64, trials: F64, successes: F64, prior_sd: F64) -> tuple[F64, F64]:
    """Dense Newton MAP and precision of the binomial-logistic GLM with N(0, sd²) priors."""
    theta = np.zeros(x.shape[1])
    prec = np.diag(1.0 / prior_sd**2)
    for _ in range(200):
        p = 1.0 / (1.0 + np.exp(-(x @ theta)))
        grad = x.T @ (successes - trials * p) - prec @ theta
        hess = x.T @ (x * (trials * p * (1 - p))[:, None]) + prec
        step = np.linalg.solve(hess, grad)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-12:
            break
    p = 1.0 / (1.0 + np.exp(-(x @ theta)))
    return theta, x.T @ (x * (trials * p * (1 - p))[:, None]) + prec


def fit_gaussian_events(x: F64, y: F64, prior_sd: F64, sigma2: float) -> F64:
    """Posterior mean of a Gaussian linear model from individual events, noise variance given."""
    prec = x.T @ x / sigma2 + np.diag(1.0 / prior_sd**2)
    return np.asarray(np.linalg.solve(prec, x.T @ y / sigma2))


def simulate_cells(
    rng: np.random.Generator,
    truth: F64,
    per_cell: int,
    reward_type: str = "bool",
    noise_sd: float = 1.0,
) -> tuple[F64, F64, F64]:
    """Draw (count, Σy, Σy²) for cells whose true mean rewards are ``truth`` (bool: rates)."""
    n = np.full(truth.shape, float(per_cell))
    if reward_type == "bool":
        s = rng.binomial(per_cell, truth).astype(np.float64)
        return n, s, s.copy()
    y = truth[..., None] + noise_sd * rng.standard_normal((*truth.shape, per_cell))
    return n, y.sum(axis=-1), (y**2).sum(axis=-1)


# -- attribution ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    org: int
    optimization: int  # 0 = the optimization under test, 1 = another one of the same org
    anonymous_id: str
    at: datetime
    variant_number: int
    context: dict[str, Any]
    holdout: bool


@dataclass(frozen=True)
class Reward:
    org: int
    anonymous_id: str
    at: datetime
    value: float
    name: str
    pinned: int | None  # None = global, else index of the optimization


def naive_attribution(
    exposures: list[Exposure],
    rewards: list[Reward],
    *,
    window: timedelta,
    as_of: datetime,
    start: datetime,
    reward_type: str,
    context_names: tuple[str, ...],
) -> dict[str, Any]:
    """Brute force over events: org 0, optimization 0, metric = rewards named 'purchase'."""
    mine = [e for e in exposures if e.org == 0 and e.optimization == 0]
    credit: dict[int, list[float]] = defaultdict(list)
    for r in rewards:
        if r.org != 0 or r.name != "purchase" or r.pinned not in (None, 0) or r.at > as_of:
            continue
        if r.at < start:  # the metric filters on @start_date
            continue
        candidates = [
            i
            for i, e in enumerate(mine)
            if e.anonymous_id == r.anonymous_id and e.at <= r.at <= e.at + window
        ]
        if candidates:
            latest = max(candidates, key=lambda i: mine[i].at)
            credit[latest].append(r.value)
    cells: dict[tuple[int, str, bool], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    users: dict[tuple[bool, str], list[float]] = defaultdict(list)
    pending = 0
    for i, e in enumerate(mine):
        if not start <= e.at <= as_of:
            continue
        if e.at + window > as_of:
            pending += 1
            continue
        got = credit.get(i, [])
        value = (1.0 if got else 0.0) if reward_type == "bool" else float(sum(got))
        ctx = {k: e.context[k] for k in context_names if k in e.context}
        cell = cells[(e.variant_number, json.dumps(ctx, sort_keys=True), e.holdout)]
        cell[0] += 1
        cell[1] += value
        cell[2] += value * value
        users[(e.holdout, e.anonymous_id)].append(value)
    arms: dict[bool, list[float]] = {False: [0, 0.0, 0.0], True: [0, 0.0, 0.0]}
    for (holdout, _), values in users.items():
        outcome = max(values) if reward_type == "bool" else sum(values)
        arms[holdout][0] += 1
        arms[holdout][1] += outcome
        arms[holdout][2] += outcome * outcome
    return {"cells": {k: tuple(v) for k, v in cells.items()}, "pending": pending, "arms": arms}
