"""Exact argmax of a cmab score over a factorial variant space, without enumerating the space.

A variant v = (l_0, …, l_{F−1}) scores s(v) = Σ_f main[f, l_f] + Σ_{f<g} pair[p(f, g), l_f, l_g]
(the sampler's flattened score table, :func:`levered.bandit.kernels._fill_table`). Maximizing
a sum of unary and pairwise terms over a grid is MAP inference in a pairwise Markov random
field, NP-hard in general; this module solves it exactly by depth-first branch and bound
(Land & Doig 1960) over the design factors, so its cost grows with how hard the draw is, not
with the number of variants.

- **Order.** Factors are assigned in decreasing order of how much they can move the score (the
  range of their main effects plus half the range of each of their pair tables), recomputed
  per draw; a node's children are visited best bound first.
- **Bound** (optimistic, exact arithmetic). With the factors before position d assigned, every
  unassigned factor h keeps acc[h, m] = main[h, m] + Σ_{f assigned} pair(f, h, l_f, m), updated
  incrementally. A pair of unassigned factors (h, h') is charged to the earlier one in the
  order through rmax(h, h', m) = max_{m'} pair(h, h', m, m'). Assigning the next factor g to
  level l then bounds its subtree by

      part + acc[g, l]
        + Σ_{h after g} max_m (acc[h, m] + pair(g, h, l, m) + Σ_{h' after h} rmax(h, h', m))

  which is exact when the model has no pair terms: the search then degenerates to a per-factor
  argmax (one descent, every sibling pruned) — the "decompose by factor" case.
- **Exclusions.** A level or level pair whose every variant is excluded (a one- or two-factor
  rule, or rules that together cover it) is folded into the table as −∞, so the bound never
  enters it. Rules on three factors or more, when given, drop a partial assignment as soon as
  it matches one in full (a count of matched factors per rule, updated on each assignment).
  Every leaf is checked against the allowed mask, which is the authority: a variant that is
  not allowed is never returned (without the rules, that check is all a wide rule gets).
- **Identical to enumeration.** The answer equals the enumeration's (highest score over
  allowed variants, an exact tie going to the lower number;
  :func:`levered.bandit.kernels._argmax_score`):
  a leaf's score is summed in the enumeration's term order, so it is the same float; a
  subtree is pruned only when its bound is below the incumbent by more than a rounding
  tolerance (bounds are summed in another order); and near a tie a second, termwise bound is
  summed in the enumeration's order — floating-point addition is monotone, so it is a true
  upper bound of every leaf's float score — and the subtree is pruned when it cannot beat the
  incumbent, or can only tie it with higher numbers. Exact ties (a zero posterior) therefore
  cost a single descent, not an enumeration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

TOLERANCE = 1e-12
"""Pruning slack, relative to the score's scale: far above the rounding of a sum of a few
hundred terms (≈ terms × 2⁻⁵³), far below any real difference between two variants."""


class Layout:
    """Index tables of the branch and bound for one variant space and allowed mask (built once
    per sampler; everything the kernel needs besides a draw's score table).

    ``rules`` are exclusion rules as {factor position: level index}; optional, they only let
    the search drop a partial assignment as soon as it matches a rule of three factors or more
    (smaller ones are already read off the mask). Each must exclude only variants the mask
    excludes, otherwise :class:`ValueError`.
    """

    def __init__(
        self,
        level_counts: tuple[int, ...],
        pair_f: I64,
        pair_g: I64,
        allowed: B,
        rules: Sequence[Mapping[int, int]] = (),
    ) -> None:
        counts = np.asarray(level_counts, dtype=np.int64)
        n_f = counts.size
        k = int(counts.max())
        size = int(np.prod(counts))
        if allowed.shape != (size,):
            raise ValueError(f"allowed mask has shape {allowed.shape}, expected ({size},)")
        self.counts = np.ascontiguousarray(counts)
        self.pair_f = np.ascontiguousarray(pair_f, dtype=np.int64)
        self.pair_g = np.ascontiguousarray(pair_g, dtype=np.int64)
        radix = np.ones(n_f, dtype=np.int64)
        for f in range(n_f - 2, -1, -1):
            radix[f] = radix[f + 1] * counts[f + 1]
        self.radix = radix
        # Pair (g, h) in either orientation: table[base + l_g * step_g + l_h * step_h].
        off = n_f * k
        self.base = np.zeros((n_f, n_f), dtype=np.int64)
        self.step_first = np.zeros((n_f, n_f), dtype=np.int64)
        self.step_second = np.zeros((n_f, n_f), dtype=np.int64)
        for p, (f, g) in enumerate(zip(self.pair_f.tolist(), self.pair_g.tolist(), strict=True)):
            self.base[f, g] = self.base[g, f] = off + p * k * k
            self.step_first[f, g], self.step_second[f, g] = k, 1
            self.step_first[g, f], self.step_second[g, f] = 1, k
        self.allowed = np.ascontiguousarray(allowed, dtype=np.bool_)
        self.first_allowed = int(np.argmax(self.allowed))
        self.ex_main, self.ex_pair = excluded_cylinders(counts, self.pair_f, self.pair_g, allowed)
        self.has_exclusions = bool(not self.allowed.all())
        wide = [dict(r) for r in rules if len(r) >= 3]
        grid = self.allowed.reshape(tuple(int(c) for c in counts))
        hits: list[list[int]] = [[] for _ in range(n_f * k)]
        for r, rule in enumerate(wide):
            where: list[int | slice] = [slice(None)] * n_f
            for f, level in rule.items():
                if not (0 <= f < n_f and 0 <= level < counts[f]):
                    raise ValueError(f"exclusion rule {rule} is outside the variant space")
                where[f] = level
                hits[f * k + level].append(r)
            if grid[tuple(where)].any():
                raise ValueError(f"exclusion rule {rule} excludes variants the mask allows")
        self.rule_len = np.array([len(r) for r in wide], dtype=np.int64)
        self.hit_start = np.zeros(n_f * k + 1, dtype=np.int64)
        self.hit_start[1:] = np.cumsum([len(h) for h in hits])
        self.hit_rule = np.array([r for h in hits for r in h], dtype=np.int64)
        self.args = (
            self.counts,
            self.pair_f,
            self.pair_g,
            self.base,
            self.step_first,
            self.step_second,
            self.radix,
            self.allowed,
            self.ex_main,
            self.ex_pair,
            self.has_exclusions,
            self.rule_len,
            self.hit_start,
            self.hit_rule,
            self.first_allowed,
        )
        """:func:`argmax_bnb`'s arguments after the table, in order."""


def excluded_cylinders(counts: I64, pair_f: I64, pair_g: I64, allowed: B) -> tuple[B, B]:
    """The levels (F, K) and level pairs (P, K, K) whose every variant is excluded.

    Read off the mask, not the rules, so they agree with it by construction (and also catch
    what several rules exclude together); one pass over the allowed variants.
    """
    n_f = counts.size
    k = int(counts.max())
    if allowed.all():
        return np.zeros((n_f, k), dtype=np.bool_), np.zeros((pair_f.size, k, k), dtype=np.bool_)
    seen_main, seen_pair = _seen(counts, pair_f, pair_g, np.ascontiguousarray(allowed), k)
    for f in range(n_f):
        seen_main[f, counts[f] :] = True  # padding is not a level: nothing to exclude
    return ~seen_main, ~seen_pair


@njit(cache=True, nogil=True)
def _seen(counts: I64, pair_f: I64, pair_g: I64, allowed: B, k: int) -> tuple[B, B]:
    """Which levels and level pairs some allowed variant uses (an odometer over the space)."""
    n_f = counts.shape[0]
    seen_main = np.zeros((n_f, k), dtype=np.bool_)
    seen_pair = np.zeros((pair_f.shape[0], k, k), dtype=np.bool_)
    lev = np.zeros(n_f, dtype=np.int64)
    for v in range(allowed.shape[0]):
        if allowed[v]:
            for f in range(n_f):
                seen_main[f, lev[f]] = True
            for p in range(pair_f.shape[0]):
                seen_pair[p, lev[pair_f[p]], lev[pair_g[p]]] = True
        f = n_f - 1
        while f >= 0:
            lev[f] += 1
            if lev[f] < counts[f]:
                break
            lev[f] = 0
            f -= 1
    return seen_main, seen_pair


@njit(cache=True, nogil=True)
def _leaf_score(tb: F64, lev: I64, k: int, pair_f: I64, pair_g: I64) -> float:
    """A variant's score summed in the enumeration's term order (mains, then pairs)."""
    n_f = lev.shape[0]
    off = n_f * k
    s = 0.0
    for f in range(n_f):
        s += tb[f * k + lev[f]]
    for p in range(pair_f.shape[0]):
        s += tb[off + (p * k + lev[pair_f[p]]) * k + lev[pair_g[p]]]
    return s


@njit(cache=True, nogil=True)
def _termwise_bound(
    tb: F64,
    lev: I64,
    pos: I64,
    depth: int,
    k: int,
    pair_f: I64,
    pair_g: I64,
    mmax: F64,
    rmax: F64,
    pmax: F64,
) -> float:
    """Upper bound of every leaf's float score below a node (factors at positions ≤ depth
    assigned): each term replaced by its largest possible value, summed in the enumeration's
    order, so by monotonicity of rounded addition it bounds the leaves' sums as computed."""
    n_f = lev.shape[0]
    off = n_f * k
    s = 0.0
    for f in range(n_f):
        s += tb[f * k + lev[f]] if pos[f] <= depth else mmax[f]
    for p in range(pair_f.shape[0]):
        f = pair_f[p]
        g = pair_g[p]
        if pos[f] <= depth and pos[g] <= depth:
            s += tb[off + (p * k + lev[f]) * k + lev[g]]
        elif pos[f] <= depth:
            s += rmax[f, g, lev[f]]
        elif pos[g] <= depth:
            s += rmax[g, f, lev[g]]
        else:
            s += pmax[p]
    return s


@njit(cache=True, nogil=True)
def argmax_bnb(
    table: F64,
    counts: I64,
    pair_f: I64,
    pair_g: I64,
    base: I64,
    step_first: I64,
    step_second: I64,
    radix: I64,
    allowed: B,
    ex_main: B,
    ex_pair: B,
    has_exclusions: bool,
    rule_len: I64,
    hit_start: I64,
    hit_rule: I64,
    first_allowed: int,
) -> int:
    """0-based number of the allowed variant with the highest score (ties: the lower number),
    by branch and bound over the factors (module docstring). ``table`` is the flattened score
    table: main[f, l] at f·K + l, then pair[p, a, b] at F·K + (p·K + a)·K + b. Rule r has
    ``rule_len[r]`` factors; the rules that fix factor f to level l are
    ``hit_rule[hit_start[f·K + l]:hit_start[f·K + l + 1]]``."""
    n_f = counts.shape[0]
    k = ex_main.shape[1]
    n_p = pair_f.shape[0]
    off = n_f * k
    tb = table
    if has_exclusions:
        tb = table.copy()
        for f in range(n_f):
            for a in range(counts[f]):
                if ex_main[f, a]:
                    tb[f * k + a] = -np.inf
        for p in range(n_p):
            for a in range(counts[pair_f[p]]):
                for b in range(counts[pair_g[p]]):
                    if ex_pair[p, a, b]:
                        tb[off + (p * k + a) * k + b] = -np.inf

    # Per-draw maxima, the score's scale and each factor's spread.
    mmax = np.full(n_f, -np.inf)
    spread = np.zeros(n_f)
    scale = 0.0
    for f in range(n_f):
        lo = np.inf
        hi = -np.inf
        big = 0.0
        for a in range(counts[f]):
            x = tb[f * k + a]
            if x > -np.inf:
                lo = min(lo, x)
                hi = max(hi, x)
                big = max(big, abs(x))
        mmax[f] = hi
        spread[f] += hi - lo if hi >= lo else 0.0
        scale += big
    pmax = np.full(n_p, -np.inf)
    for p in range(n_p):
        lo = np.inf
        hi = -np.inf
        big = 0.0
        for a in range(counts[pair_f[p]]):
            for b in range(counts[pair_g[p]]):
                x = tb[off + (p * k + a) * k + b]
                if x > -np.inf:
                    lo = min(lo, x)
                    hi = max(hi, x)
                    big = max(big, abs(x))
        pmax[p] = hi
        if hi >= lo:
            spread[pair_f[p]] += 0.5 * (hi - lo)
            spread[pair_g[p]] += 0.5 * (hi - lo)
        scale += big
    tol = TOLERANCE * (1.0 + scale)
    rmax = np.full((n_f, n_f, k), -np.inf)
    for g in range(n_f):
        for h in range(n_f):
            if g == h:
                continue
            bg = base[g, h]
            sg = step_first[g, h]
            sh = step_second[g, h]
            for a in range(counts[g]):
                hi = -np.inf
                for b in range(counts[h]):
                    hi = max(hi, tb[bg + a * sg + b * sh])
                rmax[g, h, a] = hi

    order = np.argsort(-spread, kind="mergesort")
    pos = np.empty(n_f, dtype=np.int64)
    for d in range(n_f):
        pos[order[d]] = d
    # slack[h, m]: the pairs of h with the factors after it in the order, charged to h.
    slack = np.zeros((n_f, k))
    for j in range(n_f):
        h = order[j]
        for m in range(counts[h]):
            s = 0.0
            for j2 in range(j + 1, n_f):
                s += rmax[h, order[j2], m]
            slack[h, m] = s

    acc = np.empty((n_f + 1, n_f, k))
    for f in range(n_f):
        for a in range(counts[f]):
            acc[0, f, a] = tb[f * k + a]
    part = np.zeros(n_f + 1)
    low = np.zeros(n_f + 1, dtype=np.int64)  # smallest number in the node's subtree
    cand = np.empty((n_f, k), dtype=np.int64)
    bound = np.empty((n_f, k))
    n_cand = np.zeros(n_f, dtype=np.int64)
    nxt = np.zeros(n_f, dtype=np.int64)
    lev = np.zeros(n_f, dtype=np.int64)
    ahead = np.empty((n_f, k))
    n_rules = rule_len.shape[0]
    matched = np.zeros(n_rules, dtype=np.int64)  # factors of each rule the node matches
    applied = np.full(n_f, -1, dtype=np.int64)  # level whose matches are counted, per depth
    best = -np.inf
    best_num = -1

    d = 0
    while d >= 0:
        if nxt[d] == 0 and n_cand[d] == 0:
            # Expand the node at depth d: bound every level of factor order[d].
            g = order[d]
            kg = counts[g]
            for j in range(d + 1, n_f):
                h = order[j]
                for m in range(counts[h]):
                    ahead[h, m] = acc[d, h, m] + slack[h, m]
            for a in range(kg):
                b0 = part[d] + acc[d, g, a]
                if b0 > -np.inf:
                    for j in range(d + 1, n_f):
                        h = order[j]
                        bg = base[g, h] + a * step_first[g, h]
                        sh = step_second[g, h]
                        hi = -np.inf
                        for m in range(counts[h]):
                            hi = max(hi, ahead[h, m] + tb[bg + m * sh])
                        b0 += hi
                # Insertion by decreasing bound, ties in level order (stable).
                i = a
                while i > 0 and bound[d, i - 1] < b0:
                    bound[d, i] = bound[d, i - 1]
                    cand[d, i] = cand[d, i - 1]
                    i -= 1
                bound[d, i] = b0
                cand[d, i] = a
            n_cand[d] = kg
        g = order[d]
        if applied[d] >= 0:  # leave the previous child: its rule matches no longer count
            a = applied[d]
            for q in range(hit_start[g * k + a], hit_start[g * k + a + 1]):
                matched[hit_rule[q]] -= 1
            applied[d] = -1
        if nxt[d] >= n_cand[d]:
            n_cand[d] = 0
            nxt[d] = 0
            d -= 1
            continue
        i = nxt[d]
        nxt[d] += 1
        a = cand[d, i]
        cb = bound[d, i]
        if cb == -np.inf or cb < best - tol:
            nxt[d] = n_cand[d]  # children come best bound first: none of the rest can win
            continue
        num = low[d] + a * radix[g]
        lev[g] = a
        if n_rules:
            dead = False
            for q in range(hit_start[g * k + a], hit_start[g * k + a + 1]):
                r = hit_rule[q]
                matched[r] += 1
                dead |= matched[r] == rule_len[r]
            applied[d] = a
            if dead:  # the assignment so far matches an exclusion rule in full
                continue
        if d == n_f - 1:
            if allowed[num]:
                s = _leaf_score(tb, lev, k, pair_f, pair_g)
                if s > best or (s == best and num < best_num):
                    best = s
                    best_num = num
            continue
        if cb <= best + tol:
            r = _termwise_bound(tb, lev, pos, d, k, pair_f, pair_g, mmax, rmax, pmax)
            if r < best or (r == best and num > best_num):
                continue
        part[d + 1] = part[d] + acc[d, g, a]
        low[d + 1] = num
        for j in range(d + 1, n_f):
            h = order[j]
            bg = base[g, h] + a * step_first[g, h]
            sh = step_second[g, h]
            for m in range(counts[h]):
                acc[d + 1, h, m] = acc[d, h, m] + tb[bg + m * sh]
        d += 1
    return best_num if best_num >= 0 else first_allowed
