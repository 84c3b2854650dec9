"""Observations: attribution for training (cells) and the observations page of the API.

Both run the organization's reward metric in the warehouse, as the organization
(:meth:`levered.services.warehouse.Warehouse.session`), with last-touch attribution done in SQL
(:mod:`levered.db.attribution`). The metric's SQL is normalized by the one builder metrics
use everywhere, :func:`levered.services.metrics.metric_rows_sql`. Decisions and exact formulas:
docs/attribution.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import numpy as np
import numpy.typing as npt

from levered.bandit.cells import NO_CONTEXT, Cells
from levered.db import attribution as db
from levered.db.attribution import Arm, Days, MetricSpec, OptimizationSpec, RewardType
from levered.errors import Conflict, NotFound
from levered.schemas.common import ResponseMeta
from levered.schemas.observations import Observation, ObservationPage
from levered.services.metrics import metric_rows_sql
from levered.services.warehouse import Warehouse

TRAINING_TIMEOUT_S: Final = db.DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Attribution:
    """What training and results read: cells, per-arm user totals, daily series, counts.

    ``cells`` has one row per (variant, context cell, holdout) — holdout exposures are real
    observations of the baseline, so they are in ``cells`` too; ``holdout[i]`` says whether row
    ``i`` is holdout traffic (``cells.variant_number[~holdout]`` etc. for optimized traffic only).
    ``context`` of a cell keeps only the optimization's context factors.
    """

    optimization: OptimizationSpec
    reward_type: RewardType
    cells: Cells
    holdout: npt.NDArray[np.bool_]
    optimized_users: Arm
    holdout_users: Arm
    days: Days
    matured: int
    pending: int
    as_of: datetime
    start: datetime | None


async def attribute(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    as_of: datetime | None = None,
    start: datetime | None = None,
    timeout_s: float = TRAINING_TIMEOUT_S,
) -> Attribution:
    """Attribute the optimization's matured exposures (``start ≤ timestamp``, window closed by
    ``as_of``, default now) and aggregate them to cells, in the warehouse.

    404 for an unknown or another organization's optimization; 409 ``no_reward_metric``,
    ``metric_failed`` or ``metric_timeout``.
    """
    as_of = as_of or datetime.now(UTC)
    optimization, metric = await _target(wh, organization_id, optimization_id)
    async with (
        wh.session(organization_id) as tenant,
        db.attribution_transaction(tenant, optimization.id, timeout_s=timeout_s) as tenant,
    ):
        rows_sql = _rows_sql(metric)
        found = await db.attribute_cells(
            tenant,
            rows_sql,
            metric.reward_type,
            optimization,
            as_of=as_of,
            start=start,
            timeout_s=timeout_s,
        )
    return Attribution(
        optimization=optimization,
        reward_type=metric.reward_type,
        cells=_bandit_cells(found.cells),
        holdout=np.asarray(found.cells.holdout, dtype=np.bool_),
        optimized_users=found.optimized,
        holdout_users=found.holdout,
        days=found.days,
        matured=found.matured,
        pending=found.pending,
        as_of=as_of,
        start=start,
    )


async def list_observations(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    page: int,
    size: int,
    meta: ResponseMeta,
    as_of: datetime | None = None,
) -> ObservationPage:
    """One page of matured exposures, newest first, with their attributed reward."""
    as_of = as_of or datetime.now(UTC)
    optimization, metric = await _target(wh, organization_id, optimization_id)
    timeout_s = wh.limits.timeout_s
    async with (
        wh.session(organization_id) as tenant,
        db.attribution_transaction(tenant, optimization.id, timeout_s=timeout_s) as tenant,
    ):
        rows_sql = _rows_sql(metric)
        found = await db.observation_page(
            tenant,
            rows_sql,
            metric.reward_type,
            optimization,
            as_of=as_of,
            limit=size,
            offset=(page - 1) * size,
            timeout_s=timeout_s,
        )
    observations = [
        Observation(
            anonymous_id=row.anonymous_id,
            variant_number=row.variant_number,
            variant=row.variant,
            context=row.context,
            timestamp=row.timestamp,
            holdout=row.holdout,
            reward=row.reward,
            converted=row.converted,
        )
        for row in found.rows
    ]
    return ObservationPage(
        observations, page, size, found.matured, found.pending, found.as_of, meta
    )


async def _target(
    wh: Warehouse, organization_id: UUID, optimization_id: UUID
) -> tuple[OptimizationSpec, MetricSpec]:
    async with wh.pool.acquire() as admin:
        found = await db.find_target(admin, organization_id, optimization_id)
    if found is None:
        raise NotFound(f"no optimization {optimization_id} in this organization")
    optimization, metric = found
    if metric is None:
        raise Conflict(
            "this optimization has no reward metric, so nothing can be attributed to its "
            "exposures; link one with PATCH /api/v2/optimizations/{id} "
            '{"reward_metric_id": "..."}',
            code="no_reward_metric",
        )
    return optimization, metric


def _rows_sql(metric: MetricSpec) -> str:
    """The metric's normalized rows; ``$1`` (the window start) is bound by the caller."""
    sql, _ = metric_rows_sql(metric, db.BEGINNING)
    return sql


def _bandit_cells(cells: db.Cells) -> Cells:
    """The SQL rows as :class:`levered.bandit.cells.Cells` (contexts deduplicated)."""
    contexts: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    context_index = np.empty(len(cells.context), dtype=np.int64)
    for i, context in enumerate(cells.context):
        if not context:
            context_index[i] = NO_CONTEXT
            continue
        key = repr(sorted(context.items()))
        position = index.get(key)
        if position is None:
            position = index[key] = len(contexts)
            contexts.append(context)
        context_index[i] = position
    return Cells.of(
        cells.variant_number,
        cells.count,
        cells.reward_sum,
        cells.reward_sumsq,
        context_index,
        contexts,
    )
