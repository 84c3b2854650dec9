"""Queries on metrics. Every query is scoped by organization."""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

import asyncpg

from levered.db import Connection

_COLUMNS: Final = (
    "id, name, sql, anonymous_id_col, timestamp_col, value_col, reward_type, created_at, "
    "updated_at, outcomes, name_col"
)

INSERT_METRIC: Final = f"""
INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, value_col,
                     reward_type, outcomes, name_col)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {_COLUMNS}
"""
LIST_METRICS: Final = f"""
SELECT {_COLUMNS} FROM metrics WHERE organization_id = $1
ORDER BY created_at DESC, id DESC LIMIT $2
"""
SELECT_METRIC: Final = f"SELECT {_COLUMNS} FROM metrics WHERE organization_id = $1 AND id = $2"
# FOR KEY SHARE on the optimizations we found is not enough to stop a *new* link; the foreign
# key (ON DELETE RESTRICT) is what refuses a delete racing with one (the service maps it).
SELECT_LINKED_OPTIMIZATIONS: Final = """
SELECT id, name, status FROM optimizations
WHERE organization_id = $1 AND reward_metric_id = $2
ORDER BY created_at, id
"""
DELETE_METRIC: Final = "DELETE FROM metrics WHERE organization_id = $1 AND id = $2 RETURNING id"


async def insert_metric(
    conn: Connection,
    organization_id: UUID,
    name: str,
    sql: str,
    anonymous_id_col: str,
    timestamp_col: str,
    value_col: str | None,
    reward_type: str,
    outcomes: list[dict[str, Any]] | None = None,
    name_col: str | None = None,
) -> asyncpg.Record:
    record = await conn.fetchrow(
        INSERT_METRIC,
        organization_id,
        name,
        sql,
        anonymous_id_col,
        timestamp_col,
        value_col,
        reward_type,
        outcomes,
        name_col,
    )
    assert record is not None
    return record


async def list_metrics(conn: Connection, organization_id: UUID, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_METRICS, organization_id, limit)


async def get_metric(
    conn: Connection, organization_id: UUID, metric_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_METRIC, organization_id, metric_id)


async def linked_optimizations(
    conn: Connection, organization_id: UUID, metric_id: UUID
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_LINKED_OPTIMIZATIONS, organization_id, metric_id)


async def delete_metric(conn: Connection, organization_id: UUID, metric_id: UUID) -> bool:
    return await conn.fetchval(DELETE_METRIC, organization_id, metric_id) is not None
