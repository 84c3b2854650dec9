"""The stored connection of an organization's connected warehouse (migration 0018).

``settings`` are the provider's non-secret fields: PostgreSQL's host, port, database,
username, sslmode; ClickHouse's url and username.

The row and the organization's ``warehouse_provider`` change in one transaction, so the
provider never names a connection that is not there. The password arrives here already
encrypted (:mod:`levered.services.secret_box`).
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

import asyncpg

from levered.db import Connection

SELECT: Final = """
SELECT o.warehouse_provider, c.provider, c.dataset_id, c.settings, c.secret, c.warnings,
       c.tested_at, c.updated_at, c.exposures
FROM organizations o LEFT JOIN warehouse_connections c
     ON c.organization_id = o.id AND c.provider = o.warehouse_provider
WHERE o.id = $1 AND o.warehouse_provider <> 'managed'
"""
UPSERT: Final = """
INSERT INTO warehouse_connections
    (organization_id, provider, dataset_id, settings, secret, warnings)
VALUES ($1, $2, $3, $4::jsonb, $5, $6::text[])
ON CONFLICT (organization_id) DO UPDATE
SET provider = excluded.provider, dataset_id = excluded.dataset_id,
    settings = excluded.settings, secret = excluded.secret, warnings = excluded.warnings,
    exposures = CASE WHEN warehouse_connections.provider = excluded.provider
                     THEN warehouse_connections.exposures END,
    tested_at = now(), updated_at = now()
"""
"""Reconnecting the same provider keeps the exposures table (a new password, say); another
provider drops it (its table is in the other engine)."""
SET_EXPOSURES: Final = """
UPDATE warehouse_connections SET exposures = $2::jsonb, updated_at = now()
WHERE organization_id = $1
"""
DELETE: Final = "DELETE FROM warehouse_connections WHERE organization_id = $1"
SET_PROVIDER: Final = "UPDATE organizations SET warehouse_provider = $2 WHERE id = $1"
OWNER_OF_URL: Final = """
SELECT organization_id FROM warehouse_connections
WHERE provider = $1 AND settings->>'url' = $2
ORDER BY created_at LIMIT 1
"""


async def find(conn: Connection, organization_id: UUID) -> asyncpg.Record | None:
    """The connection the organization uses now (None on the managed warehouse; ``provider``
    NULL when the organization names a provider but has no stored connection for it)."""
    return await conn.fetchrow(SELECT, organization_id)


async def connect(
    conn: Connection,
    organization_id: UUID,
    provider: str,
    dataset_id: str,
    settings: dict[str, Any],
    secret: bytes | None,
    warnings: list[str],
) -> None:
    """Store the connection and make it the organization's warehouse."""
    async with conn.transaction():
        await conn.execute(
            UPSERT,
            organization_id,
            provider,
            dataset_id,
            settings,
            secret,
            warnings,
        )
        await conn.execute(SET_PROVIDER, organization_id, provider)


async def owner_of_url(conn: Connection, provider: str, url: str) -> UUID | None:
    """The organization whose connection reads ``url`` (a chdb data directory may be named
    by one organization only: the engine has no grants to keep two apart)."""
    owner: UUID | None = await conn.fetchval(OWNER_OF_URL, provider, url)
    return owner


async def set_exposures(
    conn: Connection, organization_id: UUID, exposures: dict[str, Any] | None
) -> bool:
    """Store the table of the organization's own exposures (None: Levered's own again);
    False when the organization has no stored connection."""
    return str(await conn.execute(SET_EXPOSURES, organization_id, exposures)) != "UPDATE 0"


async def use_managed(conn: Connection, organization_id: UUID) -> None:
    """Back to the managed warehouse; the connection (and its encrypted password) is deleted."""
    async with conn.transaction():
        await conn.execute(DELETE, organization_id)
        await conn.execute(SET_PROVIDER, organization_id, "managed")
