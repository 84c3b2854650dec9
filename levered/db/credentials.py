"""Queries that resolve a presented credential (API key or OAuth access token)."""

from __future__ import annotations

from typing import Final

import asyncpg

from levered.db import Connection

SELECT_API_KEY: Final = """
SELECT id, organization_id, secret_hash, revoked_at, scopes FROM api_keys WHERE prefix = $1
"""
TOUCH_API_KEY: Final = """
UPDATE api_keys SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '30 seconds')
"""
# The role is read on every request (a LEFT JOIN: a removed member's token finds no role), so
# a role change or a removal takes effect on the very next request.
SELECT_ACCESS_TOKEN: Final = """
SELECT t.user_id, t.organization_id, t.client_id, m.role, u.is_server_admin
FROM oauth_tokens t
JOIN users u ON u.id = t.user_id
LEFT JOIN memberships m ON m.organization_id = t.organization_id AND m.user_id = t.user_id
WHERE t.token_hash = $1 AND t.kind = 'access' AND t.revoked_at IS NULL AND t.expires_at > now()
"""


async def find_api_key(conn: Connection, prefix: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_API_KEY, prefix)


async def touch_api_key(conn: Connection, key_id: object) -> None:
    """Record use; the UPDATE also skips a key recorded within 30 s (by any process)."""
    await conn.execute(TOUCH_API_KEY, key_id)


async def find_access_token(conn: Connection, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_ACCESS_TOKEN, token_hash)
