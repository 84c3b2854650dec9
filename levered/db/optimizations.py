"""Queries on optimizations and their model row. Every query is scoped by organization.

jsonb columns go in and come out as Python lists/dicts (binary codec, levered/db/pool.py).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple
from uuid import UUID

import asyncpg

from levered.db import Connection


class OptimizationValues(NamedTuple):
    """The writable columns of one optimization, in column order (jsonb fields as builtins)."""

    name: str
    status: str
    model_type: str
    design_factors: list[dict[str, Any]]
    context_factors: list[dict[str, Any]]
    reward_metric_id: UUID | None
    attribution: dict[str, Any]
    holdout_percentage: float
    excluded_combinations: list[dict[str, Any]]
    sticky: bool
    training_window: dict[str, Any]
    guardrails: list[dict[str, Any]]
    dimensions: list[str]


SELECT_METRIC: Final = """
SELECT id, name, reward_type FROM metrics WHERE organization_id = $1 AND id = $2
"""

INSERT_OPTIMIZATION: Final = """
INSERT INTO optimizations (organization_id, name, status, model_type, design_factors,
                           context_factors, reward_metric_id, attribution, holdout_percentage,
                           excluded_combinations, sticky, training_window, guardrails,
                           dimensions)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING id
"""

# The view the API shows: the optimization, its linked metric and its (non-deleted) model.
_VIEW: Final = """
SELECT o.id, o.name, o.status, o.model_type, o.design_factors, o.context_factors,
       o.reward_metric_id, o.attribution, o.holdout_percentage, o.excluded_combinations,
       o.sticky, o.summary, o.created_at, o.updated_at, o.training_window, o.guardrails,
       o.dimensions, o.status_reason, mt.name AS metric_name, mt.reward_type AS metric_reward_type,
       m.id AS model_id, m.status AS model_status, m.current_version AS model_current_version,
       mv.trained_at AS model_trained_at
FROM optimizations o
LEFT JOIN metrics mt ON mt.id = o.reward_metric_id AND mt.organization_id = o.organization_id
LEFT JOIN models m ON m.optimization_id = o.id AND m.deleted_at IS NULL
LEFT JOIN model_versions mv ON mv.model_id = m.id AND mv.version = m.current_version
"""

SELECT_OPTIMIZATION: Final = _VIEW + "WHERE o.organization_id = $1 AND o.id = $2"

LIST_OPTIMIZATIONS: Final = (
    _VIEW
    + """
WHERE o.organization_id = $1 AND ($3 OR o.status <> 'archived')
ORDER BY o.created_at DESC, o.id DESC
LIMIT $2
"""
)

LOCK_OPTIMIZATION: Final = """
SELECT id, name, status, model_type, design_factors, context_factors, reward_metric_id,
       attribution, holdout_percentage, excluded_combinations, sticky, training_window,
       guardrails, dimensions
FROM optimizations WHERE organization_id = $1 AND id = $2
FOR UPDATE
"""

UPDATE_OPTIMIZATION: Final = """
UPDATE optimizations
SET name = $3, status = $4, model_type = $5, design_factors = $6, context_factors = $7,
    reward_metric_id = $8, attribution = $9, holdout_percentage = $10,
    excluded_combinations = $11, sticky = $12, training_window = $13, guardrails = $14,
    dimensions = $15, status_reason = CASE WHEN status = $4 THEN status_reason END,
    updated_at = now()
WHERE organization_id = $1 AND id = $2
"""
"""A status change through the API clears ``status_reason`` (what the server set itself)."""

PAUSE_FOR: Final = """
UPDATE optimizations SET status = 'paused', status_reason = $3, updated_at = now()
WHERE organization_id = $1 AND id = $2 AND status = 'live'
RETURNING id
"""
"""The server's own pause (a violated guardrail): only a live optimization, with the reason."""

DELETE_DRAFT: Final = """
WITH draft AS (
    DELETE FROM optimizations WHERE organization_id = $1 AND id = $2 AND status = 'draft'
    RETURNING id
), stale AS (
    DELETE FROM assignments WHERE organization_id = $1 AND optimization_id IN (SELECT id FROM draft)
)
SELECT id FROM draft
"""
"""Assignments have no foreign key (migration 0008): the draft's go with it, in one statement."""


async def find_metric(
    conn: Connection, organization_id: UUID, metric_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_METRIC, organization_id, metric_id)


async def insert_optimization(
    conn: Connection, organization_id: UUID, values: OptimizationValues
) -> UUID:
    value: UUID = await conn.fetchval(INSERT_OPTIMIZATION, organization_id, *values)
    return value


async def select_optimization(
    conn: Connection, organization_id: UUID, optimization_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_OPTIMIZATION, organization_id, optimization_id)


async def list_optimizations(
    conn: Connection, organization_id: UUID, limit: int, include_archived: bool
) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_OPTIMIZATIONS, organization_id, limit, include_archived)


async def lock_optimization(
    conn: Connection, organization_id: UUID, optimization_id: UUID
) -> asyncpg.Record | None:
    """The row, locked until the transaction ends (call inside one)."""
    return await conn.fetchrow(LOCK_OPTIMIZATION, organization_id, optimization_id)


async def update_optimization(
    conn: Connection, organization_id: UUID, optimization_id: UUID, values: OptimizationValues
) -> None:
    await conn.execute(UPDATE_OPTIMIZATION, organization_id, optimization_id, *values)


async def delete_draft(
    conn: Connection, organization_id: UUID, optimization_id: UUID
) -> UUID | None:
    """Delete a draft (its model row cascades, its assignments go in the same statement); None
    when nothing matched."""
    value: UUID | None = await conn.fetchval(DELETE_DRAFT, organization_id, optimization_id)
    return value


async def pause_for(
    conn: Connection, organization_id: UUID, optimization_id: UUID, reason: dict[str, Any]
) -> bool:
    """Pause a live optimization, recording why; False when it was not live (nothing done)."""
    return await conn.fetchval(PAUSE_FOR, organization_id, optimization_id, reason) is not None
