"""Guardrail metrics' stored cells (migration 0017): watermark, a pass's writes, the arm reads.

The same shape as the reward metric's cells (:mod:`levered.db.cell_store`) keyed by
(optimization, metric), without context: per one-hour bucket of exposure time × variant ×
holdout, and per (bucket, holdout, user) outcomes for the optimized-vs-holdout comparison.
App-owned tables; every query is keyed by an optimization and metric the service layer has
already resolved inside the caller's organization.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from levered.db import Connection
from levered.db.attribution import Arm, MetricSpec, metric_spec

SELECT_METRICS: Final = """
SELECT id, name, sql, anonymous_id_col, timestamp_col, value_col, reward_type, outcomes,
       name_col
FROM metrics WHERE organization_id = $1 AND id = ANY($2::uuid[])
"""

SELECT_STATE: Final = """
SELECT fingerprint, as_of, frontier, marker, seen_below, passes, updated_at
FROM guardrail_state WHERE optimization_id = $1 AND metric_id = $2
"""

_KEY: Final = "hashtextextended('levered.guardrail:' || $1::text || ':' || $2::text, 0)"
LOCK: Final = f"SELECT pg_advisory_lock({_KEY})"
TRY_LOCK: Final = f"SELECT pg_try_advisory_lock({_KEY})"
UNLOCK: Final = f"SELECT pg_advisory_unlock({_KEY})"
"""One guardrail pass at a time per (optimization, metric); never the reward cells' lock."""

UPSERT_STATE: Final = """
INSERT INTO guardrail_state AS s (optimization_id, metric_id, organization_id, fingerprint,
                                  as_of, frontier, marker, seen_below, passes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)
ON CONFLICT (optimization_id, metric_id) DO UPDATE SET
    fingerprint = EXCLUDED.fingerprint, as_of = EXCLUDED.as_of, frontier = EXCLUDED.frontier,
    marker = EXCLUDED.marker, seen_below = EXCLUDED.seen_below, passes = s.passes + 1,
    updated_at = now()
"""

DELETE_IN: Final = """
DELETE FROM {table} AS t USING unnest($3::timestamptz[], $4::timestamptz[]) AS r(lo, hi)
WHERE t.optimization_id = $1 AND t.metric_id = $2 AND t.bucket >= r.lo AND t.bucket < r.hi
"""
DELETE_ALL: Final = "DELETE FROM {table} WHERE optimization_id = $1 AND metric_id = $2"

CELL_COLUMNS: Final = (
    "optimization_id",
    "metric_id",
    "bucket",
    "variant_number",
    "holdout",
    "exposures",
    "reward_sum",
    "reward_sumsq",
)
USER_COLUMNS: Final = (
    "optimization_id",
    "metric_id",
    "bucket",
    "holdout",
    "anonymous_id",
    "outcome",
)

ARMS: Final = """
SELECT holdout, count(*) AS users, coalesce(sum(o), 0) AS outcome_sum,
       coalesce(sum(o * o), 0) AS outcome_sumsq
FROM (SELECT holdout, anonymous_id,
             CASE WHEN $3 THEN max(outcome) ELSE sum(outcome) END AS o
      FROM guardrail_users WHERE optimization_id = $1 AND metric_id = $2
      GROUP BY holdout, anonymous_id) AS per_user
GROUP BY holdout
"""
"""Per-user outcomes over all buckets (bool: any credited; numeric: the sum), per arm: the
inputs of the per-user delta method. Reads every row of the guardrail's users (a scan of its
primary-key range), so its cost grows with the history, unlike the reward metric's totals."""


LIVE_WITH_AUTO_PAUSE: Final = """
SELECT organization_id, id FROM optimizations
WHERE status = 'live' AND guardrails @> '[{"auto_pause": true}]'
ORDER BY id
"""
"""Across organizations, for the scheduler only (each result is then handled in its own)."""


@dataclass(frozen=True)
class GuardrailState:
    fingerprint: str
    as_of: datetime
    frontier: datetime
    marker: datetime | None
    seen_below: int | None
    passes: int
    updated_at: datetime


@dataclass(frozen=True)
class NamedMetric:
    id: UUID
    name: str
    spec: MetricSpec


async def metrics(
    conn: Connection, organization_id: UUID, metric_ids: Sequence[UUID]
) -> dict[UUID, NamedMetric]:
    """The organization's metrics among ``metric_ids`` (others are simply absent)."""
    rows = await conn.fetch(SELECT_METRICS, organization_id, list(metric_ids))
    return {row["id"]: NamedMetric(row["id"], row["name"], metric_spec(row)) for row in rows}


async def load_state(
    conn: Connection, optimization_id: UUID, metric_id: UUID
) -> GuardrailState | None:
    row = await conn.fetchrow(SELECT_STATE, optimization_id, metric_id)
    return None if row is None else GuardrailState(**dict(row))


async def lock(conn: Connection, optimization_id: UUID, metric_id: UUID, *, wait: bool) -> bool:
    if wait:
        await conn.execute(LOCK, str(optimization_id), str(metric_id))
        return True
    return bool(await conn.fetchval(TRY_LOCK, str(optimization_id), str(metric_id)))


async def unlock(conn: Connection, optimization_id: UUID, metric_id: UUID) -> None:
    await conn.execute(UNLOCK, str(optimization_id), str(metric_id))


@dataclass(frozen=True)
class Watermark:
    organization_id: UUID
    fingerprint: str
    as_of: datetime
    frontier: datetime
    marker: datetime | None
    seen_below: int


async def begin_pass(
    conn: Connection,
    optimization_id: UUID,
    metric_id: UUID,
    mark: Watermark,
    ranges: Sequence[tuple[datetime, datetime]] | None,
    timeout_s: float,
) -> None:
    """Move the watermark and delete the buckets the pass replaces (``None``: all of them);
    ``conn`` is in the pass's transaction, which :func:`add_rows` then fills."""
    await conn.execute(
        UPSERT_STATE,
        optimization_id,
        metric_id,
        mark.organization_id,
        mark.fingerprint,
        mark.as_of,
        mark.frontier,
        mark.marker,
        mark.seen_below,
        timeout=timeout_s,
    )
    for table in ("guardrail_cells", "guardrail_users"):
        if ranges is None:
            await conn.execute(
                DELETE_ALL.format(table=table), optimization_id, metric_id, timeout=timeout_s
            )
        elif ranges:
            await conn.execute(
                DELETE_IN.format(table=table),
                optimization_id,
                metric_id,
                [r[0] for r in ranges],
                [r[1] for r in ranges],
                timeout=timeout_s,
            )


async def add_rows(
    conn: Connection,
    optimization_id: UUID,
    metric_id: UUID,
    cells: Sequence[tuple[Any, ...]],
    users: Sequence[tuple[Any, ...]],
    timeout_s: float,
) -> None:
    """One chunk's rows (:class:`levered.db.cell_passes.ChunkRows`; cells' context and outcome
    counts dropped: a guardrail is judged on its reward, not its outcome mix)."""
    key = (optimization_id, metric_id)
    if cells:
        await conn.copy_records_to_table(
            "guardrail_cells",
            columns=list(CELL_COLUMNS),
            records=[(*key, b, v, h, n, r, rr) for b, v, h, _context, n, r, rr, _ in cells],
            timeout=timeout_s,
        )
    if users:
        await conn.copy_records_to_table(
            "guardrail_users",
            columns=list(USER_COLUMNS),
            records=[(*key, *u) for u in users],
            timeout=timeout_s,
        )


async def arms(
    conn: Connection, optimization_id: UUID, metric_id: UUID, *, bool_metric: bool
) -> dict[bool, Arm]:
    """:data:`ARMS`: ``{False: optimized, True: holdout}``."""
    out = {False: Arm(0, 0.0, 0.0), True: Arm(0, 0.0, 0.0)}
    for row in await conn.fetch(ARMS, optimization_id, metric_id, bool_metric):
        out[row["holdout"]] = Arm(
            int(row["users"]), float(row["outcome_sum"]), float(row["outcome_sumsq"])
        )
    return out


async def live_with_auto_pause(conn: Connection) -> list[tuple[UUID, UUID]]:
    """(organization id, optimization id) of live optimizations with an auto-pause guardrail."""
    return [(row["organization_id"], row["id"]) for row in await conn.fetch(LIVE_WITH_AUTO_PAUSE)]
