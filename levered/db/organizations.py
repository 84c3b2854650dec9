"""Queries on organizations, users and API keys used by bootstrap and authentication."""

from __future__ import annotations

from typing import Final
from uuid import UUID

import asyncpg

from levered.db import Connection

COUNT_ORGANIZATIONS: Final = "SELECT count(*) FROM organizations"
INSERT_ORGANIZATION: Final = "INSERT INTO organizations (name) VALUES ($1) RETURNING id"
INSERT_USER: Final = """
INSERT INTO users (organization_id, email, name, password_hash, is_server_admin)
VALUES ($1, $2, $3, $4, $5)
RETURNING id
"""
INSERT_ADMIN_MEMBERSHIP: Final = """
INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'admin')
"""
INSERT_API_KEY: Final = """
INSERT INTO api_keys (organization_id, label, prefix, secret_hash, scopes)
VALUES ($1, $2, $3, $4, $5::text[])
RETURNING id, organization_id, label, prefix, scopes, created_at, last_used_at, revoked_at
"""


async def count_organizations(conn: Connection) -> int:
    return int(await conn.fetchval(COUNT_ORGANIZATIONS))


async def insert_organization(conn: Connection, name: str) -> UUID:
    value: UUID = await conn.fetchval(INSERT_ORGANIZATION, name)
    return value


async def insert_admin(
    conn: Connection,
    organization_id: UUID,
    email: str,
    name: str,
    password_hash: str,
    *,
    server_admin: bool = False,
) -> UUID:
    """A user who is admin of ``organization_id`` (the first start's, a server admin)."""
    value: UUID = await conn.fetchval(
        INSERT_USER, organization_id, email, name, password_hash, server_admin
    )
    await conn.execute(INSERT_ADMIN_MEMBERSHIP, organization_id, value)
    return value


async def insert_api_key(
    conn: Connection,
    organization_id: UUID,
    label: str,
    prefix: str,
    secret_hash: bytes,
    scopes: tuple[str, ...] = ("admin",),
) -> asyncpg.Record:
    record = await conn.fetchrow(
        INSERT_API_KEY, organization_id, label, prefix, secret_hash, list(scopes)
    )
    assert record is not None
    return record
