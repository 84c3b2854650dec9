"""The sampler's numba kernels: one posterior draw, the score table, the argmax, MAB draws.

Every kernel that draws seeds numba's generator itself from an explicit ``seed`` (MT19937, the
stream of ``numpy.random.RandomState``), so a decision replays exactly; all release the GIL
(``nogil``), so serving runs them on a worker thread. :mod:`levered.bandit.sampler` holds the
layouts they read and decides which one runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from levered.bandit.argmax import argmax_bnb

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _draw_theta(mean: F64, chol: F64, ranges: I64, z: F64, theta: F64) -> None:
    """θ[i] = μ[i] + Σ_{j≤i} L[i, j] z[j] for the rows in ``ranges`` ([start, end) pairs).

    z is drawn for 0..max(row), the only part of the stream the decision depends on. The dot
    products may be reassociated (fastmath "reassoc" only: no FMA contraction, no finite-math
    assumptions) so LLVM can vectorize them — 5× faster at 300 features. The summation order
    then depends on the SIMD width of the CPU the kernel was compiled for: replays are
    bit-identical on the same CPU family, and elsewhere differ only in the last bits of θ,
    which can change a decision only at an exact tie between two variants' scores.
    """
    top = 0
    for r in range(ranges.shape[0]):
        top = max(top, ranges[r, 1])
    for j in range(top):
        z[j] = np.random.normal(0.0, 1.0)
    for r in range(ranges.shape[0]):
        for i in range(ranges[r, 0], ranges[r, 1]):
            row = chol[i]
            acc = 0.0
            for j in range(i + 1):
                acc += row[j] * z[j]
            theta[i] = mean[i] + acc


@njit(cache=True, nogil=True)
def _fill_table(
    theta: F64, main_idx: I64, pair_idx: I64, cd_idx: I64, ctx_cols: I64, table: F64
) -> None:
    """Per-term score table: main[f, l] (+ the context's cd[c, f, l]) then pair[p, a, b],
    flattened; baseline levels score 0."""
    n_f, k = main_idx.shape
    for f in range(n_f):
        for level in range(k):
            c = main_idx[f, level]
            acc = theta[c] if c >= 0 else 0.0
            for a in range(ctx_cols.shape[0]):
                d = cd_idx[ctx_cols[a], f, level]
                if d >= 0:
                    acc += theta[d]
            table[f * k + level] = acc
    off = n_f * k
    for p in range(pair_idx.shape[0]):
        for a in range(k):
            for b in range(k):
                c = pair_idx[p, a, b]
                table[off + (p * k + a) * k + b] = theta[c] if c >= 0 else 0.0


@njit(cache=True, nogil=True)
def _argmax_score(table: F64, terms: npt.NDArray[np.int32], allowed_idx: I64) -> int:
    """argmax over allowed variants of Σ_t table[terms[a, t]]; ties go to the lower number."""
    best = -np.inf
    best_a = 0
    n_t = terms.shape[1]
    for a in range(terms.shape[0]):
        s = 0.0
        for t in range(n_t):
            s += table[terms[a, t]]
        if s > best:
            best = s
            best_a = a
    return int(allowed_idx[best_a])


@njit(cache=True, nogil=True)
def glm_choose(
    seed: int,
    mean: F64,
    chol: F64,
    ranges: I64,
    main_idx: I64,
    pair_idx: I64,
    cd_idx: I64,
    ctx_cols: I64,
    terms: npt.NDArray[np.int32],
    allowed_idx: I64,
) -> int:
    """One Thompson decision of the GLM: the 0-based index of the served variant.

    ``chol`` is L; ``terms[a]`` lists, for allowed variant ``allowed_idx[a]``, its entries
    in the flattened score table (one per factor, one per factor pair).
    """
    np.random.seed(seed)
    p = mean.shape[0]
    z = np.empty(p)
    theta = np.zeros(p)
    k = main_idx.shape[1]
    table = np.empty(main_idx.shape[0] * k + pair_idx.shape[0] * k * k)
    _draw_theta(mean, chol, ranges, z, theta)
    _fill_table(theta, main_idx, pair_idx, cd_idx, ctx_cols, table)
    return _argmax_score(table, terms, allowed_idx)


@njit(cache=True, nogil=True)
def glm_winners(
    thetas: F64,
    main_idx: I64,
    pair_idx: I64,
    cd_idx: I64,
    ctx_cols: I64,
    terms: npt.NDArray[np.int32],
    allowed_idx: I64,
) -> I64:
    """The served variant's 0-based index for each row of ``thetas`` (posterior draws)."""
    k = main_idx.shape[1]
    table = np.empty(main_idx.shape[0] * k + pair_idx.shape[0] * k * k)
    out = np.empty(thetas.shape[0], dtype=np.int64)
    for j in range(thetas.shape[0]):
        _fill_table(thetas[j], main_idx, pair_idx, cd_idx, ctx_cols, table)
        out[j] = _argmax_score(table, terms, allowed_idx)
    return out


@njit(cache=True, nogil=True)
def glm_choose_bnb(
    seed: int,
    mean: F64,
    chol: F64,
    ranges: I64,
    main_idx: I64,
    pair_idx: I64,
    cd_idx: I64,
    ctx_cols: I64,
    layout: tuple[Any, ...],
) -> int:
    """:func:`glm_choose` with the argmax found by branch and bound over the factors
    (:func:`levered.bandit.argmax.argmax_bnb`; ``layout`` is its trailing arguments,
    :meth:`Layout.args`): the same variant, without scoring every one."""
    np.random.seed(seed)
    p = mean.shape[0]
    z = np.empty(p)
    theta = np.zeros(p)
    k = main_idx.shape[1]
    table = np.empty(main_idx.shape[0] * k + pair_idx.shape[0] * k * k)
    _draw_theta(mean, chol, ranges, z, theta)
    _fill_table(theta, main_idx, pair_idx, cd_idx, ctx_cols, table)
    return argmax_bnb(table, *layout)


@njit(cache=True, nogil=True)
def glm_winners_bnb(
    thetas: F64, main_idx: I64, pair_idx: I64, cd_idx: I64, ctx_cols: I64, layout: tuple[Any, ...]
) -> I64:
    """:func:`glm_winners` with each argmax found by branch and bound."""
    k = main_idx.shape[1]
    table = np.empty(main_idx.shape[0] * k + pair_idx.shape[0] * k * k)
    out = np.empty(thetas.shape[0], dtype=np.int64)
    for j in range(thetas.shape[0]):
        _fill_table(thetas[j], main_idx, pair_idx, cd_idx, ctx_cols, table)
        out[j] = argmax_bnb(table, *layout)
    return out


# --------------------------------------------------------------------------- mab kernels


@njit(cache=True, nogil=True)
def _mab_argmax(kind: int, a: F64, b: F64, c: F64, d: F64, allowed_idx: I64) -> int:
    best = -np.inf
    best_v = -1
    for i in range(allowed_idx.shape[0]):
        v = allowed_idx[i]
        if kind == 0:
            x = np.random.beta(a[v], b[v])
        else:
            sigma2 = d[v] / np.random.gamma(c[v], 1.0)
            x = a[v] + np.sqrt(sigma2 / b[v]) * np.random.normal(0.0, 1.0)
        if x > best:
            best = x
            best_v = v
    return best_v


@njit(cache=True, nogil=True)
def mab_choose(seed: int, kind: int, a: F64, b: F64, c: F64, d: F64, allowed_idx: I64) -> int:
    """One Thompson decision of independent arms: kind 0 = Beta(a, b); kind 1 = NIG with
    (μ, κ, α, β) = (a, b, c, d). Returns the 0-based index of the served variant."""
    np.random.seed(seed)
    return _mab_argmax(kind, a, b, c, d, allowed_idx)


@njit(cache=True, nogil=True)
def mab_winners(
    seed: int, n_draws: int, kind: int, a: F64, b: F64, c: F64, d: F64, allowed_idx: I64
) -> I64:
    """The winners of ``n_draws`` Thompson decisions of independent arms (one seeded stream)."""
    np.random.seed(seed)
    out = np.empty(n_draws, dtype=np.int64)
    for j in range(n_draws):
        out[j] = _mab_argmax(kind, a, b, c, d, allowed_idx)
    return out


# --------------------------------------------------------------------------- façade
