"""Queries of serving: the config of one optimization, sticky assignments, exposure COPY.

Serving is public: nothing here is scoped by a caller's organization. The optimization's own
``organization_id`` travels with its config and is written on every row serving stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple
from uuid import UUID

import asyncpg

from levered.db import Connection
from levered.db.warehouse import TWIN_LOCK, TWIN_WINDOW

CHANNEL: Final = "levered_serving"
"""The NOTIFY channel of migrations/0006_serving.sql (payload: an optimization id)."""

SELECT_CONFIG: Final = """
SELECT o.id, o.organization_id, o.status, o.model_type, o.design_factors, o.context_factors,
       o.holdout_percentage, o.excluded_combinations, o.sticky, o.live_since,
       m.id AS model_id, mv.version AS model_version
FROM optimizations o
LEFT JOIN models m ON m.optimization_id = o.id AND m.deleted_at IS NULL
LEFT JOIN model_versions mv ON mv.model_id = m.id AND mv.version = m.current_version
WHERE o.id = $1
"""

SELECT_POSTERIOR: Final = """
SELECT posterior FROM model_versions WHERE model_id = $1 AND version = $2
"""

# Valid = made since the optimization last entered live ($3, NULL = any).
SELECT_ASSIGNMENT: Final = """
SELECT variant_number, holdout, decision_id, propensity, model_version
FROM assignments
WHERE optimization_id = $1 AND anonymous_id = $2 AND ($3::timestamptz IS NULL OR assigned_at >= $3)
"""

# Sticky claims: insert each new decision, or replace a stale one (made before the
# optimization last entered live: its row's live_since, NULL = any); where a valid assignment
# exists the INSERT returns nothing and the second branch reads it. One row per distinct
# (optimization, anonymous id) — ON CONFLICT DO UPDATE cannot touch a row twice in one
# statement, so the caller removes repeats. A key committed by another process after this
# statement's snapshot comes back in neither branch: the caller claims it again.
#
# The batch travels as one jsonb array of positional rows (AssignmentRow order, then
# live_since), encoded by msgspec in one call: nine typed arrays cost the worker ≈ 2× more
# client CPU per claim (asyncpg encodes every element in Python). A claimed row comes back as
# its position only — the caller has its values — and a kept one with the stored values.
CLAIM_ASSIGNMENTS: Final = """
WITH input AS (
    SELECT (r->>0)::uuid AS optimization_id, r->>1 AS anonymous_id,
           (r->>2)::uuid AS organization_id, (r->>3)::integer AS variant_number,
           (r->>4)::boolean AS holdout, (r->>5)::uuid AS decision_id,
           (r->>6)::float8 AS propensity, (r->>7)::integer AS model_version,
           (r->>8)::timestamptz AS live_since, (i - 1)::integer AS i
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(r, i)
),
claimed AS (
    INSERT INTO assignments AS a (optimization_id, anonymous_id, organization_id, variant_number,
                                  holdout, decision_id, propensity, model_version)
    SELECT optimization_id, anonymous_id, organization_id, variant_number, holdout,
           decision_id, propensity, model_version
    FROM input
    ON CONFLICT (optimization_id, anonymous_id) DO UPDATE
        SET organization_id = EXCLUDED.organization_id,
            variant_number = EXCLUDED.variant_number,
            holdout = EXCLUDED.holdout,
            decision_id = EXCLUDED.decision_id,
            propensity = EXCLUDED.propensity,
            model_version = EXCLUDED.model_version,
            assigned_at = now()
        WHERE a.assigned_at < (SELECT i.live_since FROM input i
                               WHERE i.optimization_id = a.optimization_id
                                 AND i.anonymous_id = a.anonymous_id)
    RETURNING a.optimization_id, a.anonymous_id
)
SELECT i.i, NULL::integer AS variant_number, NULL::boolean AS holdout,
       NULL::uuid AS decision_id, NULL::float8 AS propensity, NULL::integer AS model_version
FROM input i JOIN claimed c USING (optimization_id, anonymous_id)
UNION ALL
SELECT i.i, a.variant_number, a.holdout, a.decision_id, a.propensity, a.model_version
FROM assignments a JOIN input i USING (optimization_id, anonymous_id)
WHERE NOT EXISTS (SELECT 1 FROM claimed c
                  WHERE c.optimization_id = i.optimization_id
                    AND c.anonymous_id = i.anonymous_id)
"""

EXPOSURE_COLUMNS: Final = (
    "organization_id",
    "optimization_id",
    "anonymous_id",
    "variant",
    "variant_number",
    "context",
    "timestamp",
    "propensity",
    "decision_id",
    "model_version",
    "holdout",
)
ASSIGNMENT_COLUMNS: Final = (
    "optimization_id",
    "anonymous_id",
    "organization_id",
    "variant_number",
    "holdout",
    "decision_id",
    "propensity",
    "model_version",
)

# Exclusive, for the flush's transaction: waits for the ingestion batches of these
# optimizations that are checking for twins, and they for it (levered/db/warehouse.py).
LOCK_TWIN_CHECKS: Final = """
SELECT pg_advisory_xact_lock($1, k)
FROM (SELECT DISTINCT hashtext(id::text) AS k FROM unnest($2::uuid[]) AS id ORDER BY 1) AS keys
"""
# Marks the optimizations served (the first time: $7 holds their distinct ids) and deletes the
# ingested twins of the rows just copied: per served row of an optimization with ingested
# exposures, an index range scan of exposures_attribution_idx; none for the others.
SETTLE_TWINS: Final = """
WITH served AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::integer[], $5::timestamptz[])
        AS s(organization_id, optimization_id, anonymous_id, variant_number, at)
), marked AS (
    UPDATE optimizations SET first_served_at = now()
    WHERE id = ANY($7::uuid[]) AND first_served_at IS NULL
), probed AS MATERIALIZED (  -- before the probes (inlined, it was joined after them)
    SELECT * FROM served
    WHERE optimization_id IN (SELECT id FROM optimizations
                              WHERE id = ANY($7::uuid[]) AND first_ingested_at IS NOT NULL)
)
DELETE FROM warehouse.exposures e USING probed s
WHERE e.optimization_id = s.optimization_id AND e.anonymous_id = s.anonymous_id
  AND e."timestamp" + interval '0' BETWEEN s.at - $6::interval AND s.at + $6::interval
  AND e.decision_id IS NULL AND e.organization_id = s.organization_id
  AND e.variant_number = s.variant_number
"""
"""The probes go by user (``exposures_attribution_idx``), never by time: ``+ interval '0'``
keeps the ±60 s range out of the index conditions, as in
:data:`levered.db.warehouse.INSERT_EXPOSURES_WITHOUT_SERVED_TWINS` (why, there). Serves are
clustered in time, so a time-range probe would read every exposure served around it."""

ExposureRow = tuple[
    UUID, UUID, str, dict[str, Any], int, dict[str, Any], datetime, float, UUID, int | None, bool
]
"""One served exposure in :data:`EXPOSURE_COLUMNS` order."""
AssignmentRow = tuple[UUID, str, UUID, int, bool, UUID, float, int | None]
"""One sticky assignment in :data:`ASSIGNMENT_COLUMNS` order."""


class Assignment(NamedTuple):
    variant_number: int
    holdout: bool
    decision_id: UUID
    propensity: float
    model_version: int | None


async def select_config(conn: Connection, optimization_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_CONFIG, optimization_id)


async def select_posterior(conn: Connection, model_id: UUID, version: int) -> bytes | None:
    value: bytes | None = await conn.fetchval(SELECT_POSTERIOR, model_id, version)
    return value


def _assignment(row: asyncpg.Record) -> Assignment:
    return Assignment(
        row["variant_number"],
        row["holdout"],
        row["decision_id"],
        row["propensity"],
        row["model_version"],
    )


async def select_assignment(
    conn: Connection, optimization_id: UUID, anonymous_id: str, live_since: datetime | None
) -> Assignment | None:
    row = await conn.fetchrow(SELECT_ASSIGNMENT, optimization_id, anonymous_id, live_since)
    return None if row is None else _assignment(row)


async def claim_assignment(
    conn: Connection, row: AssignmentRow, live_since: datetime | None
) -> Assignment:
    """Store ``row`` unless a valid assignment exists; returns whichever one holds (a one-row
    :func:`claim_assignments`, run again while a concurrent commit hides the key)."""
    for _ in range(3):
        found = await claim_assignments(conn, [row], [live_since])
        if found:
            return found[(row[0], row[1])]
    raise RuntimeError("assignment neither stored nor found after 3 attempts")


async def claim_assignments(
    conn: Connection, rows: Sequence[AssignmentRow], live_since: Sequence[datetime | None]
) -> dict[tuple[UUID, str], Assignment]:
    """Claim many distinct keys in one statement; returns the holding assignment of every key
    it could settle (see ``CLAIM_ASSIGNMENTS`` for the others)."""
    batch = [(*row, since) for row, since in zip(rows, live_since, strict=True)]
    out: dict[tuple[UUID, str], Assignment] = {}
    for found in await conn.fetch(CLAIM_ASSIGNMENTS, batch):
        row = rows[found[0]]
        out[(row[0], row[1])] = (
            Assignment(row[3], row[4], row[5], row[6], row[7])
            if found[1] is None
            else Assignment(found[1], found[2], found[3], found[4], found[5])
        )
    return out


async def copy_exposures(conn: Connection, rows: Sequence[ExposureRow]) -> None:
    """One COPY in one transaction: every row or none (no idempotency key, so no conflicts).

    The same transaction settles twins (:mod:`levered.db.warehouse`, "Twins of served
    exposures"): :func:`lock_twin_checks` before the COPY, :func:`settle_twins` after it.
    """
    if not rows:
        return
    async with conn.transaction():
        await lock_twin_checks(conn, rows)
        await conn.copy_records_to_table(
            "exposures", schema_name="warehouse", columns=list(EXPOSURE_COLUMNS), records=rows
        )
        await settle_twins(conn, rows)


async def lock_twin_checks(conn: Connection, rows: Sequence[ExposureRow]) -> None:
    """Take the twin locks of the rows' optimizations for this transaction (exclusive: waits
    for ingestion batches checking those optimizations for twins). Call it in the transaction
    that stores served ``rows``, before storing them."""
    await conn.execute(LOCK_TWIN_CHECKS, TWIN_LOCK, list({row[1] for row in rows}))


async def settle_twins(conn: Connection, rows: Sequence[ExposureRow]) -> int:
    """Mark the rows' optimizations served and delete the ingested twins of ``rows``; returns
    how many were deleted. Call it after storing them, in the same transaction, which
    :func:`lock_twin_checks` locked first. Any path that stores served exposures must."""
    status = await conn.execute(
        SETTLE_TWINS,
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2] for row in rows],
        [row[4] for row in rows],
        [row[6] for row in rows],
        TWIN_WINDOW,
        list({row[1] for row in rows}),
    )
    return int(status.rsplit(" ", 1)[1])  # "DELETE <n>"


async def copy_assignments(conn: Connection, rows: Sequence[AssignmentRow]) -> None:
    """COPY assignments of ids the server generated itself (random, so they cannot conflict)."""
    await conn.copy_records_to_table("assignments", columns=list(ASSIGNMENT_COLUMNS), records=rows)
