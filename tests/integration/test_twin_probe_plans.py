"""The twin probes (levered/db/warehouse.py and levered/db/serving.py) look each row up by user,
whatever the planner believes about the table: on a table never analyzed, holding a backfill
whose events share one timestamp, they used the time index and read every exposure of the
optimization within ±60 s per row (a batch's time grew with the table, seconds per batch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from levered.db.serving import SETTLE_TWINS
from levered.db.warehouse import INSERT_EXPOSURES_WITHOUT_SERVED_TWINS, TWIN_WINDOW
from tests.conftest import Org
from tests.integration.test_training import make_optimization

pytestmark = pytest.mark.anyio
AT = datetime(2026, 12, 7, 10, tzinfo=UTC)


@pytest.fixture
async def unanalyzed(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """Exposures without statistics (autovacuum off for the test, as before its first run)."""
    await conn.execute("ALTER TABLE warehouse.exposures SET (autovacuum_enabled = false)")
    try:
        yield conn
    finally:
        await conn.execute("ALTER TABLE warehouse.exposures RESET (autovacuum_enabled)")


async def _plan(conn: asyncpg.Connection, sql: str, *args: Any) -> str:
    return "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + sql, *args))


async def test_twin_probes_go_by_user_on_a_backfill_with_one_timestamp(
    unanalyzed: asyncpg.Connection, org: Org
) -> None:
    conn = unanalyzed
    opt = await make_optimization(conn, org)
    await conn.copy_records_to_table(
        "exposures",
        schema_name="warehouse",
        columns=["organization_id", "optimization_id", "anonymous_id", "variant",
                 "variant_number", "context", "timestamp", "idempotency_key"],
        records=[(org.id, opt, f"u{i}", {}, 1, {}, AT, f"k{i}") for i in range(30_000)],
    )  # fmt: skip
    n = 500
    ingest = await _plan(
        conn,
        INSERT_EXPOSURES_WITHOUT_SERVED_TWINS,
        [org.id] * n, [opt] * n, [f"v{i}" for i in range(n)], [{}] * n, [1] * n, [{}] * n,
        [AT] * n, [str(uuid4()) for _ in range(n)], [True] * n, TWIN_WINDOW,
    )  # fmt: skip
    assert "exposures_attribution_idx" in ingest and "exposures_time_idx" not in ingest, ingest
    settle = await _plan(
        conn,
        SETTLE_TWINS,
        [org.id] * n, [opt] * n, [f"v{i}" for i in range(n)], [1] * n, [AT] * n, TWIN_WINDOW,
        [opt],
    )  # fmt: skip
    assert "exposures_time_idx" not in settle, settle
