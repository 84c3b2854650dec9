"""Queries on invites: one-time tokens that add an email to an organization with a role.

Tokens are stored as SHA-256 digests. Accepting is a single conditional ``UPDATE … WHERE
accepted_at IS NULL AND expires_at > now() RETURNING``: of two concurrent accepts exactly one
gets the row.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final
from uuid import UUID

import asyncpg

from levered.db import Connection

INVITE_COLUMNS: Final = "id, organization_id, email, role, created_at, expires_at, accepted_at"
INSERT_INVITE: Final = f"""
INSERT INTO invites (organization_id, token_hash, email, role, invited_by, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + $6::interval)
RETURNING {INVITE_COLUMNS}
"""
LIST_INVITES: Final = f"""
SELECT {INVITE_COLUMNS} FROM invites WHERE organization_id = $1 ORDER BY created_at DESC
"""
CLAIM_INVITE: Final = f"""
UPDATE invites SET accepted_at = now()
WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > now()
RETURNING {INVITE_COLUMNS}
"""
SET_ACCEPTED_BY: Final = "UPDATE invites SET accepted_by = $2 WHERE id = $1"
SELECT_INVITE: Final = f"""
SELECT {INVITE_COLUMNS}, expires_at > now() AS live FROM invites WHERE token_hash = $1
"""


async def insert_invite(
    conn: Connection,
    organization_id: UUID,
    token_hash: bytes,
    email: str,
    role: str,
    invited_by: UUID | None,
    lifetime: timedelta,
) -> asyncpg.Record:
    record = await conn.fetchrow(
        INSERT_INVITE, organization_id, token_hash, email, role, invited_by, lifetime
    )
    assert record is not None
    return record


async def list_invites(conn: Connection, organization_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_INVITES, organization_id)


async def claim_invite(conn: Connection, token_hash: bytes) -> asyncpg.Record | None:
    """Mark a live, unused invite accepted; None when it is unknown, used or expired."""
    return await conn.fetchrow(CLAIM_INVITE, token_hash)


async def set_accepted_by(conn: Connection, invite_id: UUID, user_id: UUID) -> None:
    await conn.execute(SET_ACCEPTED_BY, invite_id, user_id)


async def find_invite(conn: Connection, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_INVITE, token_hash)
