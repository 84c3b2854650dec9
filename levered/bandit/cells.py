"""Training input: observations aggregated to cells (variant × context cell).

SQL aggregates matured observations to one row per (variant number, context cell) with the
count, Σreward and Σreward² (docs/attribution.md); the models read nothing else, so training cost
follows the number of cells, not the number of events. Count, sum and sum of squares are the
sufficient statistics of both likelihoods we use: binomial (successes = Σreward, trials =
count) and Gaussian (Σy, Σy² give the residual sum of squares for any linear predictor).

``context_index`` points into ``contexts`` (a tuple of factor→value dicts); ``-1`` means the
observation carried no context. An empty dict in ``contexts`` means the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

NO_CONTEXT = -1


@dataclass(frozen=True)
class Cells:
    """Validated, contiguous cell arrays; build with :meth:`of`."""

    variant_number: I64
    context_index: I64
    count: F64
    reward_sum: F64
    reward_sumsq: F64
    contexts: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def of(
        cls,
        variant_number: Sequence[int] | npt.ArrayLike,
        count: Sequence[float] | npt.ArrayLike,
        reward_sum: Sequence[float] | npt.ArrayLike,
        reward_sumsq: Sequence[float] | npt.ArrayLike | None = None,
        context_index: Sequence[int] | npt.ArrayLike | None = None,
        contexts: Sequence[Mapping[str, Any]] = (),
    ) -> Cells:
        """Copy the inputs into contiguous typed arrays and check their shapes and ranges.

        ``reward_sumsq`` defaults to ``reward_sum`` (right for 0/1 rewards, where y² = y).
        """
        number = np.ascontiguousarray(variant_number, dtype=np.int64)
        n = number.shape[0]
        cnt = np.ascontiguousarray(count, dtype=np.float64)
        rsum = np.ascontiguousarray(reward_sum, dtype=np.float64)
        rsq = np.ascontiguousarray(
            reward_sum if reward_sumsq is None else reward_sumsq, dtype=np.float64
        )
        ctx = (
            np.full(n, NO_CONTEXT, dtype=np.int64)
            if context_index is None
            else np.ascontiguousarray(context_index, dtype=np.int64)
        )
        for name, arr in (("count", cnt), ("reward_sum", rsum), ("reward_sumsq", rsq)):
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} has non-finite values")
        if ctx.shape != (n,):
            raise ValueError(f"context_index has shape {ctx.shape}, expected ({n},)")
        if n and number.min() < 1:
            raise ValueError("variant numbers are 1-based")
        if np.any(cnt < 0):
            raise ValueError("count must be non-negative")
        if n and (ctx.min() < NO_CONTEXT or ctx.max() >= len(contexts)):
            raise ValueError("context_index must be -1 or an index into contexts")
        return cls(number, ctx, cnt, rsum, rsq, tuple(dict(c) for c in contexts))

    @property
    def size(self) -> int:
        return int(self.variant_number.shape[0])

    @property
    def exposures(self) -> float:
        return float(self.count.sum())

    def per_variant(self, n_variants: int) -> tuple[F64, F64, F64]:
        """(count, Σreward, Σreward²) per variant, index = number − 1, contexts pooled."""
        if self.size and int(self.variant_number.max()) > n_variants:
            raise ValueError(f"a cell's variant number exceeds the space size {n_variants}")
        idx = self.variant_number - 1
        return (
            np.bincount(idx, weights=self.count, minlength=n_variants).astype(np.float64),
            np.bincount(idx, weights=self.reward_sum, minlength=n_variants).astype(np.float64),
            np.bincount(idx, weights=self.reward_sumsq, minlength=n_variants).astype(np.float64),
        )
