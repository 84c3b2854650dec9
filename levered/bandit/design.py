"""Feature encoding of the cmab GLM, kept as index tables rather than a design matrix.

Every feature is a 0/1 indicator, so a row of the design matrix is just the set of its active
columns. Features, in column order:

1. design main effects: one column per level of each factor;
2. pairwise design interactions: one column per pair of levels of each factor pair;
3. context × design: for each known context value, one column per design main-effect column;
4. the intercept;
5. context main effects: one-hot of every known context value (no reference level — the
   Gaussian prior identifies them, and a context with no known value then scores exactly as the
   population model, all context features zero).

The order is chosen for the sampler: it only needs coefficients that differ between variants
(blocks 1–3 for the active context), and with θ = μ + L z and L lower triangular a coefficient
depends only on z up to its own row, so the intercept and context mains — constant across
variants, irrelevant to the argmax — sit last and are never drawn when serving.

Coding is *exchangeable*: every level, the baseline included, has its own column with the same
prior, so no level is special before data arrives and, with no data, every variant is equally
likely best (under reference coding — level 0 fixed at 0, the others N(0, 1) — the baseline of a
4-level factor is best with probability 1/8, not 1/4, and a model trained on nothing already
"prefers" non-baseline variants). The intercept is collinear with each factor's level columns;
the proper priors identify the fit. Posteriors written before this coding carry no ``coding``
in their meta and are read back with the old reference layout (``coding="reference"``).

Priors (independent Gaussians, mean 0), one scale per block: design mains, design pairs, and
context × design terms, defaults sd 1.0 / 0.3 / 0.3 (interactions shrunk harder, as in
hierarchical factorial models: Gelman et al., BDA3 §15); the fit replaces the defaults by scales
learned from the cells (:mod:`levered.bandit.scales`). sd 5.0 for the intercept, 1.0 for context
mains. The scale is the linear predictor: logits for bool rewards, standardized reward for
numeric ones.

A variant's score is Σ_f main[f, l_f] + Σ_{f<g} pair[f, g, l_f, l_g] + Σ_c cd[c, f, l_f]
(+ constants), computed from the level indices: the variants' feature matrix is never built,
which keeps 10⁴+ variant spaces cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from levered.bandit.cells import Cells

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

PRIOR_SD_MAIN = 1.0
PRIOR_SD_INTERACTION = 0.3
PRIOR_SD_INTERCEPT = 5.0
MIN_CONTEXT_COUNT = 20.0

ContextValue = str | bool | int | float


def _value_key(value: Any) -> tuple[str, Any]:
    # True == 1 in Python; a context value keeps its JSON type.
    return (type(value).__name__, value)


def levels_matrix(level_counts: Sequence[int]) -> I64:
    """Level index per (variant, factor); row = number − 1, first factor most significant."""
    counts = [int(k) for k in level_counts]
    size = int(np.prod(counts)) if counts else 1
    numbers = np.arange(size, dtype=np.int64)
    out = np.empty((size, len(counts)), dtype=np.int64)
    place = 1
    for f in range(len(counts) - 1, -1, -1):
        out[:, f] = (numbers // place) % counts[f]
        place *= counts[f]
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class Design:
    """Column layout for given factor level counts and a context vocabulary.

    ``context_vocab`` lists the known (context factor, value) pairs; its position is the
    context column ``c`` used in ``cd_idx`` and ``ctx_main_idx``.
    """

    level_counts: tuple[int, ...]
    context_vocab: tuple[tuple[str, ContextValue], ...] = ()
    coding: str = "exchangeable"
    scales: tuple[tuple[str, float], ...] = ()
    """Prior sd per block name (see :meth:`blocks`) replacing the default of its kind."""
    main_idx: I64 = field(init=False, repr=False, compare=False)
    pair_f: I64 = field(init=False, repr=False, compare=False)
    pair_g: I64 = field(init=False, repr=False, compare=False)
    pair_idx: I64 = field(init=False, repr=False, compare=False)
    cd_idx: I64 = field(init=False, repr=False, compare=False)
    intercept: int = field(init=False, repr=False, compare=False)
    ctx_main_idx: I64 = field(init=False, repr=False, compare=False)
    prior_sd: F64 = field(init=False, repr=False, compare=False)
    n_features: int = field(init=False, repr=False, compare=False)
    _lookup: dict[tuple[str, str, Any], int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = tuple(int(k) for k in self.level_counts)
        if not counts or min(counts) < 1:
            raise ValueError("every design factor needs at least one level")
        if self.coding not in ("exchangeable", "reference"):
            raise ValueError(f"unknown coding {self.coding!r}")
        first = 0 if self.coding == "exchangeable" else 1
        sd_main, sd_pair, sd_cd = PRIOR_SD_MAIN, PRIOR_SD_INTERACTION, PRIOR_SD_INTERACTION
        n_f = len(counts)
        k = max(counts)
        col = 0
        sds: list[float] = []
        main = np.full((n_f, k), -1, dtype=np.int64)
        for f, kf in enumerate(counts):
            for level in range(first, kf):
                main[f, level] = col
                col += 1
                sds.append(sd_main)
        pairs = [(f, g) for f in range(n_f) for g in range(f + 1, n_f)]
        pair = np.full((len(pairs), k, k), -1, dtype=np.int64)
        for p, (f, g) in enumerate(pairs):
            for a in range(first, counts[f]):
                for b in range(first, counts[g]):
                    pair[p, a, b] = col
                    col += 1
                    sds.append(sd_pair)
        n_c = len(self.context_vocab)
        cd = np.full((n_c, n_f, k), -1, dtype=np.int64)
        for c in range(n_c):
            for f, kf in enumerate(counts):
                for level in range(first, kf):
                    cd[c, f, level] = col
                    col += 1
                    sds.append(sd_cd)
        intercept = col
        col += 1
        sds.append(PRIOR_SD_INTERCEPT)
        ctx_main = np.arange(col, col + n_c, dtype=np.int64)
        col += n_c
        sds.extend([PRIOR_SD_MAIN] * n_c)
        lookup: dict[tuple[str, str, Any], int] = {}
        for c, (name, value) in enumerate(self.context_vocab):
            lookup[(name, *_value_key(value))] = c
        object.__setattr__(self, "level_counts", counts)
        object.__setattr__(self, "main_idx", main)
        object.__setattr__(self, "pair_f", np.array([f for f, _ in pairs], dtype=np.int64))
        object.__setattr__(self, "pair_g", np.array([g for _, g in pairs], dtype=np.int64))
        object.__setattr__(self, "pair_idx", pair)
        object.__setattr__(self, "cd_idx", cd)
        object.__setattr__(self, "intercept", intercept)
        object.__setattr__(self, "ctx_main_idx", ctx_main)
        prior_sd = np.array(sds, dtype=np.float64)
        overrides = dict(self.scales)
        for name, cols in self.blocks():
            if name in overrides:
                prior_sd[cols] = float(overrides[name])
        object.__setattr__(self, "prior_sd", prior_sd)
        object.__setattr__(self, "n_features", col)
        object.__setattr__(self, "_lookup", lookup)

    @property
    def first_level(self) -> int:
        """The first level with its own column: 0, or 1 under the legacy reference coding."""
        return 0 if self.coding == "exchangeable" else 1

    def blocks(self) -> list[tuple[str, I64]]:
        """Prior blocks, one scale each, as in a hierarchical ANOVA (Gelman 2005, "Analysis of
        variance — why it is more important than ever"): ``main:f`` per design factor,
        ``pair:f:g`` per factor pair, ``context:name:f`` per context factor × design factor."""
        out: list[tuple[str, I64]] = []
        for f in range(len(self.level_counts)):
            row = self.main_idx[f]
            out.append((f"main:{f}", row[row >= 0]))
        for p in range(self.pair_f.size):
            cols = self.pair_idx[p][self.pair_idx[p] >= 0]
            out.append((f"pair:{int(self.pair_f[p])}:{int(self.pair_g[p])}", np.sort(cols)))
        by_name: dict[str, list[int]] = {}
        for c, (name, _) in enumerate(self.context_vocab):
            by_name.setdefault(name, []).append(c)
        for name, cs in by_name.items():
            for f in range(len(self.level_counts)):
                cols = self.cd_idx[cs, f]
                out.append((f"context:{name}:{f}", np.sort(cols[cols >= 0])))
        return [(n, c.astype(np.int64)) for n, c in out if c.size]

    @property
    def n_variants(self) -> int:
        return int(np.prod(self.level_counts))

    @property
    def n_context_columns(self) -> int:
        return len(self.context_vocab)

    def context_columns(self, context: Mapping[str, Any] | None) -> I64:
        """Known context columns of a context; unknown factors or values are dropped, so an
        unseen context falls back to the population model."""
        if not context:
            return np.empty(0, dtype=np.int64)
        cols = [
            c
            for name, value in context.items()
            if (c := self._lookup.get((name, *_value_key(value)))) is not None
        ]
        return np.array(sorted(cols), dtype=np.int64)

    def active_columns(self, levels: I64, ctx_cols: I64) -> I64:
        """Active feature columns of each row (padded with −1): the sparse design matrix.

        ``levels`` is (rows, factors); ``ctx_cols`` is (rows, m) context columns, −1 padded.
        """
        rows, n_f = levels.shape
        parts: list[I64] = [self.main_idx[np.arange(n_f), levels]]
        if self.pair_f.size:
            p = np.arange(self.pair_f.size)
            parts.append(self.pair_idx[p, levels[:, self.pair_f], levels[:, self.pair_g]])
        parts.append(np.full((rows, 1), self.intercept, dtype=np.int64))
        for j in range(ctx_cols.shape[1]):
            c = ctx_cols[:, j]
            known = c >= 0
            safe = np.where(known, c, 0)
            if self.n_context_columns:
                cd = self.cd_idx[safe[:, None], np.arange(n_f)[None, :], levels]
                parts.append(np.where(known[:, None], cd, -1))
                parts.append(np.where(known, self.ctx_main_idx[safe], -1)[:, None])
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.int64)

    def cell_columns(self, cells: Cells) -> I64:
        """Active columns of each cell (the training design, one sparse row per cell)."""
        per_context = [self.context_columns(c) for c in cells.contexts]
        width = max((a.size for a in per_context), default=0)
        table = np.full((len(per_context) + 1, max(width, 1)), -1, dtype=np.int64)
        for i, a in enumerate(per_context):
            table[i, : a.size] = a
        # Row len(per_context) is "no context" (index −1 wraps to it).
        ctx = table[cells.context_index] if width else np.empty((cells.size, 0), np.int64)
        levels = levels_matrix(self.level_counts)[cells.variant_number - 1]
        return self.active_columns(levels, ctx)

    def dense(self, active: I64) -> F64:
        """Dense 0/1 design matrix of active-column rows (tests and small reports only)."""
        x = np.zeros((active.shape[0], self.n_features), dtype=np.float64)
        rows, cols = np.nonzero(active >= 0)
        x[rows, active[rows, cols]] = 1.0
        return x


def context_vocabulary(
    cells: Cells, min_count: float = MIN_CONTEXT_COUNT
) -> tuple[tuple[str, ContextValue], ...]:
    """Context (factor, value) pairs seen in at least ``min_count`` exposures.

    Rarer values get no column: their cells, and future requests carrying them, are scored by
    the population model — a value seen a handful of times would otherwise carry only prior
    noise into every decision for it.
    """
    totals: dict[tuple[str, str, Any], float] = {}
    values: dict[tuple[str, str, Any], ContextValue] = {}
    per_context = np.bincount(
        np.where(cells.context_index >= 0, cells.context_index, len(cells.contexts)),
        weights=cells.count,
        minlength=len(cells.contexts) + 1,
    )
    for i, ctx in enumerate(cells.contexts):
        for name, value in ctx.items():
            if value is None or isinstance(value, dict | list):
                continue
            key = (str(name), *_value_key(value))
            totals[key] = totals.get(key, 0.0) + float(per_context[i])
            values[key] = value
    known = [k for k, t in totals.items() if t >= min_count]
    known.sort(key=lambda k: (k[0], k[1], repr(k[2])))
    return tuple((k[0], values[k]) for k in known)
