"""A guardrail metric's cells for an optimization, extended incrementally like the reward's.

The reward metric's pass (:mod:`levered.services.cells`) decides which one-hour buckets of
exposure time new data can change — the frontier's and the late events' — and re-attributes
them with :func:`levered.db.cell_passes.chunk`. A guardrail metric is attributed to the same
exposures by the very same statements and replacement rule — on whichever warehouse the rewards live
(:mod:`levered.services.reward_source`: the managed one, or a connected PostgreSQL with its
reload buffer) — with its own watermark
(``guardrail_state``), so its buckets are equally exact, and a guardrail pass never waits for
or blocks the reward's. Cells carry no context (guardrails judge the whole traffic). The
first pass, and a change of the metric or of the attribution (the fingerprint), rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from levered.db import Connection
from levered.db import cell_passes as passes
from levered.db import guardrail_cells as db
from levered.db.attribution import Arm, MetricSpec, OptimizationSpec
from levered.db.cell_store import CellState
from levered.services import cells, reward_source
from levered.services.warehouse import Warehouse


@dataclass(frozen=True)
class GuardrailPass:
    state: db.GuardrailState
    rebuilt: bool
    exposures: int


async def extend(
    wh: Warehouse,
    organization_id: UUID,
    optimization: OptimizationSpec,
    metric_id: UUID,
    metric: MetricSpec,
    *,
    wait: bool = True,
    timeout_s: float = cells.PASS_TIMEOUT_S,
) -> GuardrailPass | None:
    """Bring the guardrail's cells to now; None when ``wait`` is False and another pass of
    the same guardrail is running (the caller reads the cells as they are)."""
    spec = OptimizationSpec(
        optimization.id,
        optimization.conversion_window_hours,
        design_factors=optimization.design_factors,
    )
    as_of = datetime.now(UTC)
    async with (
        reward_source.open_source(wh, organization_id, metric, timeout_s, spec) as source,
        wh.pool.acquire() as app,
    ):
        fp = cells.fingerprint(spec, metric, source.identity)
        if not await db.lock(app, spec.id, metric_id, wait=wait):
            return None
        try:
            previous = await db.load_state(app, spec.id, metric_id)
            full = previous is None or previous.fingerprint != fp
            if previous is not None and not full and as_of <= previous.as_of:
                return GuardrailPass(previous, False, 0)
            async with app.transaction():
                exposures = await _pass(
                    wh, app, organization_id, spec, metric_id, metric, source, previous, fp,
                    as_of, full, timeout_s,
                )  # fmt: skip
            state = await db.load_state(app, spec.id, metric_id)
            assert state is not None
            return GuardrailPass(state, full, exposures)
        finally:
            await db.unlock(app, spec.id, metric_id)


async def _pass(
    wh: Warehouse,
    app: Connection,
    organization_id: UUID,
    spec: OptimizationSpec,
    metric_id: UUID,
    metric: MetricSpec,
    source: reward_source.RewardSource,
    previous: db.GuardrailState | None,
    fp: str,
    as_of: datetime,
    full: bool,
    timeout_s: float,
) -> int:
    window = timedelta(hours=spec.conversion_window_hours)
    frontier = as_of - window
    exposures = 0
    async with reward_source.snapshot(wh, organization_id, spec.id, source, timeout_s) as tenant:
        seen_below = await passes.snapshot_xmin(tenant)
        if full or previous is None:
            ranges = [(passes.EPOCH, cells.floor_bucket(frontier) + passes.BUCKET)]
            seen_after = passes.EPOCH
        else:
            ranges = await cells.dirty_ranges(
                tenant, spec.id, _as_cell_state(previous), frontier, window, source.reload,
                source.exposures,
            )  # fmt: skip
            seen_after = previous.marker - cells.LATE_MARGIN if previous.marker else passes.EPOCH
        marker = await passes.marker(tenant, spec.id, seen_after, source.exposures)
        if (
            previous is not None
            and not full
            and (marker is None or (previous.marker is not None and marker < previous.marker))
        ):
            marker = previous.marker
        await db.begin_pass(
            app,
            spec.id,
            metric_id,
            db.Watermark(organization_id, fp, as_of, frontier, marker, seen_below),
            None if full else ranges,
            timeout_s,
        )
        async for rows, n in cells.attributed_chunks(
            tenant, source, spec, metric, ranges,
            frontier=frontier, as_of=as_of, timeout_s=timeout_s, at_least_one=full,
        ):  # fmt: skip
            await db.add_rows(app, spec.id, metric_id, rows.cells, rows.users, timeout_s)
            exposures += n
    return exposures


def _as_cell_state(state: db.GuardrailState) -> CellState:
    """The watermark fields :func:`levered.services.cells.dirty_ranges` reads, in its type."""
    empty = Arm(0, 0.0, 0.0)
    return CellState(
        fingerprint=state.fingerprint,
        as_of=state.as_of,
        frontier=state.frontier,
        marker=state.marker,
        seen_below=state.seen_below,
        passes=state.passes,
        rebuilt_at=state.updated_at,
        updated_at=state.updated_at,
        pending=[],
        optimized=empty,
        holdout=empty,
    )
