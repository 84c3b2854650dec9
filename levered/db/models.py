"""Queries on models and their immutable versions. Every API query is scoped by organization;
the scheduler's candidate query is the one cross-organization read (it runs as the app).

A model row is "the" model of an optimization while ``deleted_at IS NULL`` (a partial unique
index keeps one); versions are append-only. Serving reads ``models.current_version`` and the
matching ``model_versions`` row (migration 0006's triggers tell it when that changes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg

from levered.db import Connection
from levered.db.cell_passes import unseen

# -- the model of an optimization -------------------------------------------------------------

ENSURE_MODEL: Final = """
INSERT INTO models (organization_id, optimization_id)
SELECT organization_id, id FROM optimizations WHERE organization_id = $1 AND id = $2
ON CONFLICT (optimization_id) WHERE deleted_at IS NULL DO NOTHING
"""
"""Optimizations made through the API get their model row at creation; rows inserted by hand
(or whose model was deleted before 0007-era code) get one here, lazily."""

SELECT_TARGET: Final = """
SELECT o.id AS optimization_id, o.organization_id, o.name AS optimization_name, o.status,
       o.model_type, o.design_factors, o.excluded_combinations, o.holdout_percentage,
       o.reward_metric_id,
       m.id AS model_id, m.status AS model_status, m.current_version,
       mv.bias AS current_bias
FROM optimizations o
LEFT JOIN models m ON m.optimization_id = o.id AND m.deleted_at IS NULL
LEFT JOIN model_versions mv ON mv.model_id = m.id AND mv.version = m.current_version
WHERE o.organization_id = $1 AND o.id = $2
"""

_MODEL_VIEW: Final = """
SELECT m.id, m.optimization_id, o.name AS optimization_name, o.status AS optimization_status,
       o.model_type, m.status, m.current_version, m.last_error, m.created_at, m.updated_at,
       mv.trained_at, mv.bias
FROM models m
JOIN optimizations o ON o.id = m.optimization_id AND o.organization_id = m.organization_id
LEFT JOIN model_versions mv ON mv.model_id = m.id AND mv.version = m.current_version
"""

SELECT_MODEL: Final = (
    _MODEL_VIEW + "WHERE m.organization_id = $1 AND m.id = $2 AND m.deleted_at IS NULL"
)

LIST_MODELS: Final = (
    _MODEL_VIEW
    + """
WHERE m.organization_id = $1 AND m.deleted_at IS NULL AND ($3 OR o.status <> 'archived')
ORDER BY m.created_at DESC, m.id DESC
LIMIT $2
"""
)

SELECT_VERSION: Final = """
SELECT model_id, version, kind, posterior, window_start, window_end, counts, seed, trained_at,
       bias
FROM model_versions
WHERE organization_id = $1 AND model_id = $2 AND version = $3
"""

SOFT_DELETE: Final = """
UPDATE models SET deleted_at = now(), updated_at = now()
WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL
RETURNING optimization_id
"""

INSERT_MODEL: Final = """
INSERT INTO models (organization_id, optimization_id) VALUES ($1, $2) RETURNING id
"""

# -- training ---------------------------------------------------------------------------------

TRY_TRAINING_LOCK: Final = """
SELECT pg_try_advisory_lock(hashtextextended('levered.train:' || $1::uuid::text, 0))
"""
"""Session-level lock keyed by the *optimization* (its model may be deleted and replaced while
a training runs; the lock still covers "the model of this optimization")."""

TRAINING_UNLOCK: Final = """
SELECT pg_advisory_unlock(hashtextextended('levered.train:' || $1::uuid::text, 0))
"""

SET_STATUS: Final = """
UPDATE models SET status = $2, last_error = $3, updated_at = now() WHERE id = $1
"""

NEXT_VERSION: Final = """
SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE model_id = $1
"""

INSERT_VERSION: Final = """
INSERT INTO model_versions (model_id, version, organization_id, kind, posterior, window_start,
                            window_end, counts, seed, bias)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING trained_at
"""

PUBLISH_VERSION: Final = """
UPDATE models SET current_version = $2, status = 'trained', last_error = NULL, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
"""

SET_SUMMARY: Final = """
UPDATE optimizations SET summary = $3 WHERE organization_id = $1 AND id = $2
"""

# -- the scheduler ----------------------------------------------------------------------------

SCHEDULER_CANDIDATES: Final = """
SELECT o.organization_id, o.id AS optimization_id,
       (o.attribution ->> 'conversion_window_hours')::float8 * 3600.0 AS window_seconds,
       mv.version, mv.window_end AS trained_as_of,
       (mv.counts ->> 'data_through')::timestamptz AS trained_through,
       (mv.counts ->> 'marker')::timestamptz AS trained_marker,
       (mv.counts ->> 'seen_below')::bigint AS trained_seen_below,
       st.fingerprint AS cells_fingerprint
FROM optimizations o
JOIN models m ON m.optimization_id = o.id AND m.deleted_at IS NULL
LEFT JOIN model_versions mv ON mv.model_id = m.id AND mv.version = m.current_version
LEFT JOIN observation_state st ON st.optimization_id = o.id
WHERE o.status = 'live' AND o.reward_metric_id IS NOT NULL
ORDER BY o.id
"""

NEW_MATURED: Final = """
SELECT EXISTS (SELECT 1 FROM warehouse.exposures
               WHERE optimization_id = $1 AND "timestamp" > $2
                 AND "timestamp" <= now() - make_interval(secs => $3))
"""
"""Exposures that matured since the version's frontier ($2): a range of ``exposures_time_idx``."""

NEW_LATE: Final = f"""
SELECT EXISTS (SELECT 1 FROM warehouse.exposures
               WHERE received_at > $3 AND optimization_id = $2 AND "timestamp" <= $4
                 AND {unseen("xmin", "$5")})
    OR EXISTS (SELECT 1 FROM warehouse.rewards
               WHERE received_at > $3 AND organization_id = $1 AND "timestamp" <= $4
                 AND (optimization_id IS NULL OR optimization_id = $2)
                 AND {unseen("xmin", "$5")})
"""
"""Events the version's cells did not see — received after $3 and not committed before the
snapshot with xmin $5 (:func:`levered.db.cell_passes.unseen`) — timed at or before its as-of
($4): late data. Through the BRIN indexes on ``received_at`` (the newest block ranges)."""


async def ensure_model(conn: Connection, organization_id: UUID, optimization_id: UUID) -> None:
    await conn.execute(ENSURE_MODEL, organization_id, optimization_id)


async def select_target(
    conn: Connection, organization_id: UUID, optimization_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_TARGET, organization_id, optimization_id)


async def select_model(
    conn: Connection, organization_id: UUID, model_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_MODEL, organization_id, model_id)


async def list_models(
    conn: Connection, organization_id: UUID, limit: int, include_archived: bool
) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_MODELS, organization_id, limit, include_archived)


async def select_version(
    conn: Connection, organization_id: UUID, model_id: UUID, version: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_VERSION, organization_id, model_id, version)


async def soft_delete(conn: Connection, organization_id: UUID, model_id: UUID) -> UUID | None:
    """Mark the model deleted; its optimization's id, or None when nothing matched."""
    value: UUID | None = await conn.fetchval(SOFT_DELETE, organization_id, model_id)
    return value


async def insert_model(conn: Connection, organization_id: UUID, optimization_id: UUID) -> UUID:
    value: UUID = await conn.fetchval(INSERT_MODEL, organization_id, optimization_id)
    return value


async def try_training_lock(conn: Connection, optimization_id: UUID) -> bool:
    return bool(await conn.fetchval(TRY_TRAINING_LOCK, optimization_id))


async def training_unlock(conn: Connection, optimization_id: UUID) -> None:
    await conn.fetchval(TRAINING_UNLOCK, optimization_id)


async def set_status(
    conn: Connection, model_id: UUID, status: str, last_error: str | None = None
) -> None:
    await conn.execute(SET_STATUS, model_id, status, last_error)


async def next_version(conn: Connection, model_id: UUID) -> int:
    return int(await conn.fetchval(NEXT_VERSION, model_id))


async def insert_version(
    conn: Connection,
    model_id: UUID,
    version: int,
    organization_id: UUID,
    kind: str,
    posterior: bytes,
    window_start: datetime | None,
    window_end: datetime,
    counts: dict[str, Any],
    seed: int,
    bias: dict[str, float] | None = None,
) -> datetime:
    """Write one immutable version; its ``trained_at``."""
    value: datetime = await conn.fetchval(
        INSERT_VERSION,
        model_id,
        version,
        organization_id,
        kind,
        posterior,
        window_start,
        window_end,
        counts,
        seed,
        bias,
    )
    return value


async def publish_version(conn: Connection, model_id: UUID, version: int) -> bool:
    """Make ``version`` current (status trained); False when the model was deleted."""
    return await conn.execute(PUBLISH_VERSION, model_id, version) == "UPDATE 1"


async def set_summary(
    conn: Connection, organization_id: UUID, optimization_id: UUID, summary: dict[str, Any]
) -> None:
    await conn.execute(SET_SUMMARY, organization_id, optimization_id, summary)


async def scheduler_candidates(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(SCHEDULER_CANDIDATES)


async def new_matured(
    conn: Connection, optimization_id: UUID, after: datetime, window_seconds: float
) -> bool:
    return bool(await conn.fetchval(NEW_MATURED, optimization_id, after, window_seconds))


async def new_late(
    conn: Connection,
    organization_id: UUID,
    optimization_id: UUID,
    received_after: datetime,
    through: datetime,
    seen_below: int | None,
) -> bool:
    return bool(
        await conn.fetchval(
            NEW_LATE, organization_id, optimization_id, received_after, through, seen_below
        )
    )
