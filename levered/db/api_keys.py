"""Queries on the API-key resource; every one is scoped by organization.

Creation reuses :func:`levered.db.organizations.insert_api_key` (bootstrap uses it too);
resolving a presented key lives in :mod:`levered.db.credentials`.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

import asyncpg

from levered.db import Connection

LIST_API_KEYS: Final = """
SELECT id, label, prefix, scopes, created_at, last_used_at, revoked_at
FROM api_keys
WHERE organization_id = $1
ORDER BY created_at DESC, id DESC
"""
# coalesce keeps the first revocation time: revoking twice is harmless and changes nothing.
REVOKE_API_KEY: Final = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1 AND organization_id = $2
RETURNING id, label, prefix, scopes, created_at, last_used_at, revoked_at
"""


async def list_api_keys(conn: Connection, organization_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_API_KEYS, organization_id)


async def revoke_api_key(
    conn: Connection, key_id: UUID, organization_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(REVOKE_API_KEY, key_id, organization_id)
