"""Dimensions: results broken down by one context factor or dimension, from stored cells.

A *dimension* is a context key the optimization lists in ``dimensions`` and the model does not
use (``platform``): each pass writes the same sums per (dimension value, variant, holdout) as
the cells (:mod:`levered.db.cell_passes`), so its breakdown reads like a context factor's.

The cells keep, per hour × variant × holdout × context cell, the matured exposures and the sum
and sum of squares of their attributed reward (docs/attribution.md), so any context factor's
breakdown is a sum over cells — no raw events are read. Per value: each variant's rate
(Σ reward / exposures) with a 95 % normal interval, mean ± 1.96 · s / √n from the sample
variance s² = (Σr² − (Σr)²/n) / (n − 1); the pooled optimized and holdout arms; and the lift of
optimized over holdout within the value with the measured lift's log-ratio delta method. The
unit is the *exposure* (cells keep no per-user outcomes per context): with repeated exposures
per user the intervals are somewhat narrower than per-user ones would be.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final
from uuid import UUID

from levered.db import dimensions as db
from levered.db.attribution import Arm
from levered.errors import ValidationError
from levered.schemas.results import DimensionArm, DimensionBreakdown, DimensionValue
from levered.services import results as results_service
from levered.services.warehouse import Warehouse

Z95: Final = 1.959963984540054
MAX_VALUES: Final = 100


def check(dimension: str, context_factors: Sequence[str], dimensions: Sequence[str]) -> None:
    """400 naming the ``dimension`` query parameter unless it is a context factor or one of
    the optimization's dimensions."""
    if dimension in context_factors or dimension in dimensions:
        return
    factors = ", ".join(context_factors) or "none"
    listed = ", ".join(dimensions) or "none"
    message = (
        f"{dimension!r} is neither a context factor of this optimization (its context factors: "
        f"{factors}) nor one of its dimensions ({listed}); add it to the optimization's "
        '"dimensions" to keep its breakdown (from the next training pass, which rebuilds)'
    )
    raise ValidationError(
        f"invalid query parameter dimension: {message}",
        details=[{"path": "dimension", "message": message}],
    )


def _arm(number: int | None, n: float, total: float, squares: float) -> DimensionArm:
    rate = total / n if n else None
    ci = None
    if rate is not None and n >= 2:
        s2 = max(squares - total * total / n, 0.0) / (n - 1)
        half = Z95 * math.sqrt(s2 / n)
        ci = [rate - half, rate + half]
    return DimensionArm(number=number, exposures=int(n), reward_sum=total, rate=rate, ci=ci)


def breakdown(name: str, rows: Sequence[Any]) -> DimensionBreakdown:
    """Rows of :data:`levered.db.dimensions.BY_VALUE` as the breakdown (module doc)."""
    values: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = repr(row["value"])
        entry = values.setdefault(
            key,
            {"value": row["value"], "variants": defaultdict(lambda: [0.0, 0.0, 0.0]),
             "arms": {False: [0.0, 0.0, 0.0], True: [0.0, 0.0, 0.0]}},
        )  # fmt: skip
        sums = (float(row["n"]), float(row["reward_sum"]), float(row["reward_sumsq"]))
        targets = [entry["arms"][bool(row["holdout"])]]
        if not row["holdout"]:
            targets.append(entry["variants"][row["variant_number"]])
        for target in targets:
            for i, x in enumerate(sums):
                target[i] += x
    out = []
    for entry in values.values():
        o, h = entry["arms"][False], entry["arms"][True]
        lift = results_service.measured_lift(Arm(int(o[0]), o[1], o[2]), Arm(int(h[0]), h[1], h[2]))
        out.append(
            DimensionValue(
                value=entry["value"],
                exposures=int(o[0] + h[0]),
                variants=[_arm(v, *sums) for v, sums in sorted(entry["variants"].items())],
                optimized=_arm(None, *o),
                holdout=_arm(None, *h),
                lift_percent=lift.lift_percent,
                lift_ci=lift.ci,
            )
        )
    out.sort(key=lambda d: (-d.exposures, repr(d.value)))
    return DimensionBreakdown(name=name, values=out[:MAX_VALUES], values_total=len(out))


async def dimension(
    wh: Warehouse, optimization_id: UUID, name: str, context_factors: Sequence[str]
) -> DimensionBreakdown:
    """The breakdown of an optimization the caller has already resolved in its organization
    and checked ``name`` for (:func:`check`); the results service does both."""
    async with wh.pool.acquire() as conn:
        if name in context_factors:
            rows = await db.by_value(conn, optimization_id, name)
        else:
            rows = await db.by_dimension_value(conn, optimization_id, name)
    return breakdown(name, rows)
