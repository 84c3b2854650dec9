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
SELECT_ACCESS_TOKEN: Final = """
SELECT user_id, organization_id FROM oauth_tokens
WHERE token_hash = $1 AND kind = 'access' AND revoked_at IS NULL AND expires_at > now()
"""


async def find_api_key(conn: Connection, prefix: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_API_KEY, prefix)


async def touch_api_key(conn: Connection, key_id: object) -> None:
    """Record use, at most every 30 s per key, so hot ingestion does not write per request."""
    await conn.execute(TOUCH_API_KEY, key_id)


async def find_access_token(conn: Connection, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_ACCESS_TOKEN, token_hash)
