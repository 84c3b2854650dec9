"""What a pass saw is told apart from what it did not by its snapshot, not by ``received_at``.

``received_at`` is a transaction's start time, so a batch that commits after a pass took its
snapshot can carry an older ``received_at`` than the newest event that pass saw. Both sides:
events the previous pass saw are not re-attributed again (they used to be, for every pass of
the 5-minute margin), and an event committed late with an older ``received_at`` is still found
— by the next pass and by the scheduler's check.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from levered.db import models as models_db
from levered.db.attribution import MetricSpec, OptimizationSpec, find_target
from levered.services import cells
from levered.services.warehouse import Warehouse
from tests.conftest import Org
from tests.integration.test_attribution import insert_metric, insert_optimization, wh

__all__ = ["wh"]  # the fixture, imported for pytest

pytestmark = pytest.mark.anyio

EXPOSURE = (
    "INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, variant, "
    'variant_number, context, "timestamp", holdout, received_at) '
    "VALUES ($1, $2, $3, jsonb_build_object('headline', 'a'), 1, jsonb_build_object(), $4, "
    "false, {received})"
)
REWARD = (
    'INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "timestamp", '
    "received_at) VALUES ($1, $2, 'purchase', 1, $3, {received})"
)


async def _setup(
    conn: asyncpg.Connection, org: Org, users: int
) -> tuple[UUID, OptimizationSpec, MetricSpec, datetime]:
    metric = await insert_metric(conn, org)
    optimization_id = await insert_optimization(conn, org, metric, window_hours=1.0)
    found = await find_target(conn, org.id, optimization_id)
    assert found is not None and found[1] is not None
    matured = datetime.now(UTC) - timedelta(hours=5)
    for i in range(users):
        await conn.execute(
            EXPOSURE.format(received="now()"),
            org.id,
            optimization_id,
            f"u{i}",
            matured + timedelta(minutes=i),
        )
    return optimization_id, found[0], found[1], matured


async def test_events_the_previous_pass_saw_are_not_re_attributed(
    wh: Warehouse, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id, optimization, metric, matured = await _setup(conn, org, users=6)
    first = await cells.extend(wh, org.id, optimization, metric)
    assert first is not None and first.exposures == 6
    # A late reward (received now, timed 3 h ago): the next pass re-attributes its buckets.
    await conn.execute(
        REWARD.format(received="now()"), org.id, "u2", matured + timedelta(minutes=5)
    )
    second = await cells.extend(wh, org.id, optimization, metric)
    assert second is not None and second.exposures == 6
    assert second.state.optimized.outcome_sum == 1.0
    # Nothing arrived since: the reward is inside the margin before the marker, but the
    # second pass saw it, so the third re-attributes nothing and the scheduler waits.
    third = await cells.extend(wh, org.id, optimization, metric)
    assert third is not None and (third.ranges, third.exposures) == (0, 0)
    assert third.state.seen_below is not None and third.state.marker is not None
    assert not await models_db.new_late(
        conn,
        org.id,
        optimization_id,
        third.state.marker - cells.LATE_MARGIN,
        third.state.as_of,
        third.state.seen_below,
    )
    assert third.state.optimized.outcome_sum == 1.0


async def test_a_batch_committed_after_a_pass_with_an_older_received_at_is_found(
    wh: Warehouse, conn: asyncpg.Connection, org: Org, db_url: str
) -> None:
    optimization_id, optimization, metric, matured = await _setup(conn, org, users=4)
    first = await cells.extend(wh, org.id, optimization, metric)
    assert first is not None and first.state.optimized.outcome_sum == 0.0
    slow = await asyncpg.connect(db_url)
    try:
        batch = slow.transaction()
        await batch.start()
        # received_at = this transaction's start, before everything below.
        await slow.execute(
            REWARD.format(received="now()"), org.id, "u1", matured + timedelta(minutes=2)
        )
        await conn.execute(
            REWARD.format(received="clock_timestamp()"),
            org.id,
            "u3",
            matured + timedelta(minutes=4),
        )
        second = await cells.extend(wh, org.id, optimization, metric)
        assert second is not None and second.state.optimized.outcome_sum == 1.0  # u3 only
        await batch.commit()
    finally:
        await slow.close()
    state = second.state
    assert state.marker is not None and state.seen_below is not None
    late = await conn.fetchval(
        "SELECT received_at FROM warehouse.rewards "
        "WHERE anonymous_id = 'u1' AND organization_id = $1",
        org.id,
    )
    assert late < state.marker  # older than the newest event the pass saw: only xmin tells
    assert await models_db.new_late(
        conn,
        org.id,
        optimization_id,
        state.marker - cells.LATE_MARGIN,
        state.as_of,
        state.seen_below,
    )
    third = await cells.extend(wh, org.id, optimization, metric)
    assert third is not None and third.exposures > 0
    assert third.state.optimized.outcome_sum == 2.0
    rebuilt = await cells.extend(wh, org.id, optimization, metric, rebuild=True)
    assert rebuilt is not None and rebuilt.state.optimized == third.state.optimized
