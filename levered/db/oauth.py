"""Queries of the login flow: users by email, authorization codes, token families; and the
user and organization rows ``GET /api/v2/me`` shows.

Codes and tokens are stored only as SHA-256 digests. The statements that *consume* a code or a
refresh token are single conditional ``UPDATE … WHERE used_at IS NULL … RETURNING``: under
concurrent use exactly one caller gets the row, the others get nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final
from uuid import UUID

import asyncpg

from levered.db import Connection

SELECT_USER_BY_EMAIL: Final = """
SELECT id, organization_id, password_hash FROM users WHERE lower(email) = lower($1)
"""
# A user of an organization is one with a membership there (users.organization_id is only the
# organization the account was created in).
SELECT_USER: Final = """
SELECT u.id, u.email, u.name FROM users u
JOIN memberships m ON m.user_id = u.id AND m.organization_id = $2
WHERE u.id = $1
"""
SELECT_ORGANIZATION: Final = """
SELECT id, name, warehouse_provider FROM organizations WHERE id = $1
"""

INSERT_CODE: Final = """
INSERT INTO oauth_codes
    (code_hash, user_id, organization_id, client_id, redirect_uri, code_challenge, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval)
"""
# Used codes are kept a day past expiry so that a late replay is still recognized as reuse.
DELETE_STALE_CODES: Final = """
DELETE FROM oauth_codes WHERE expires_at < now() - interval '1 day'
"""
REDEEM_CODE: Final = """
UPDATE oauth_codes SET used_at = now()
WHERE code_hash = $1 AND used_at IS NULL AND expires_at > now()
  AND client_id = $2 AND redirect_uri = $3 AND code_challenge = $4
RETURNING user_id, organization_id
"""
SELECT_CODE: Final = """
SELECT client_id, redirect_uri, code_challenge, used_at, expires_at > now() AS live
FROM oauth_codes WHERE code_hash = $1
"""

INSERT_TOKEN_PAIR: Final = """
INSERT INTO oauth_tokens
    (token_hash, kind, family_id, user_id, organization_id, client_id, expires_at)
VALUES ($1, 'access', $3, $4, $5, $6, now() + $7::interval),
       ($2, 'refresh', $3, $4, $5, $6, now() + $8::interval)
"""
ROTATE_REFRESH_TOKEN: Final = """
UPDATE oauth_tokens SET used_at = now()
WHERE token_hash = $1 AND kind = 'refresh'
  AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
  AND ($2::text IS NULL OR client_id = $2)
RETURNING family_id, user_id, organization_id, client_id
"""
SELECT_REFRESH_TOKEN: Final = """
SELECT family_id, client_id, used_at, revoked_at, expires_at > now() AS live
FROM oauth_tokens WHERE token_hash = $1 AND kind = 'refresh'
"""
REVOKE_FAMILY: Final = """
UPDATE oauth_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL
"""
# An access token is revoked alone; a refresh token takes its whole family (RFC 7009 §2.1).
REVOKE_TOKEN: Final = """
UPDATE oauth_tokens SET revoked_at = now()
WHERE revoked_at IS NULL
  AND (token_hash = $1
       OR family_id = (SELECT family_id FROM oauth_tokens
                       WHERE token_hash = $1 AND kind = 'refresh'))
"""


async def find_user_by_email(conn: Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_USER_BY_EMAIL, email)


async def find_user(
    conn: Connection, user_id: UUID, organization_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_USER, user_id, organization_id)


async def find_organization(conn: Connection, organization_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_ORGANIZATION, organization_id)


async def insert_code(
    conn: Connection,
    code_hash: bytes,
    user_id: UUID,
    organization_id: UUID,
    client_id: str,
    redirect_uri: str,
    code_challenge: str,
    lifetime: timedelta,
) -> None:
    await conn.execute(
        INSERT_CODE,
        code_hash,
        user_id,
        organization_id,
        client_id,
        redirect_uri,
        code_challenge,
        lifetime,
    )


async def delete_stale_codes(conn: Connection) -> None:
    await conn.execute(DELETE_STALE_CODES)


async def redeem_code(
    conn: Connection, code_hash: bytes, client_id: str, redirect_uri: str, code_challenge: str
) -> asyncpg.Record | None:
    """Mark the code used if every binding matches; None when it does not (or was used)."""
    return await conn.fetchrow(REDEEM_CODE, code_hash, client_id, redirect_uri, code_challenge)


async def find_code(conn: Connection, code_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_CODE, code_hash)


async def insert_token_pair(
    conn: Connection,
    access_hash: bytes,
    refresh_hash: bytes,
    family_id: UUID,
    user_id: UUID,
    organization_id: UUID,
    client_id: str,
    access_lifetime: timedelta,
    refresh_lifetime: timedelta,
) -> None:
    await conn.execute(
        INSERT_TOKEN_PAIR,
        access_hash,
        refresh_hash,
        family_id,
        user_id,
        organization_id,
        client_id,
        access_lifetime,
        refresh_lifetime,
    )


async def rotate_refresh_token(
    conn: Connection, token_hash: bytes, client_id: str | None
) -> asyncpg.Record | None:
    """Mark a live refresh token used; None when it is unknown, used, revoked or expired."""
    return await conn.fetchrow(ROTATE_REFRESH_TOKEN, token_hash, client_id)


async def find_refresh_token(conn: Connection, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_REFRESH_TOKEN, token_hash)


async def revoke_family(conn: Connection, family_id: UUID) -> None:
    await conn.execute(REVOKE_FAMILY, family_id)


async def revoke_token(conn: Connection, token_hash: bytes) -> None:
    await conn.execute(REVOKE_TOKEN, token_hash)
