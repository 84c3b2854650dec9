"""Queries on memberships (user × organization × role) and the organizations a user belongs to.

Every statement that reads or changes an organization's members takes the organization id, so
a caller can only ever name members of the organization it acts for. Changes that could leave
an organization without an admin first lock the organization's row (:func:`lock_organization`),
so two concurrent demotions cannot both see "another admin remains".
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

import asyncpg

from levered.db import Connection

MEMBER_COLUMNS: Final = """
u.id, u.email, u.name, m.role, m.created_at, m.updated_at
"""
LIST_MEMBERS: Final = f"""
SELECT {MEMBER_COLUMNS}
FROM memberships m JOIN users u ON u.id = m.user_id
WHERE m.organization_id = $1
ORDER BY m.created_at, u.email
"""
SELECT_MEMBER: Final = f"""
SELECT {MEMBER_COLUMNS}
FROM memberships m JOIN users u ON u.id = m.user_id
WHERE m.organization_id = $1 AND m.user_id = $2
"""
INSERT_MEMBERSHIP: Final = """
INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, $3)
ON CONFLICT (organization_id, user_id) DO NOTHING
RETURNING user_id
"""
UPDATE_ROLE: Final = """
UPDATE memberships SET role = $3, updated_at = now()
WHERE organization_id = $1 AND user_id = $2
"""
DELETE_MEMBERSHIP: Final = """
DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2
"""
LOCK_ORGANIZATION: Final = "SELECT id FROM organizations WHERE id = $1 FOR UPDATE"
COUNT_ADMINS: Final = """
SELECT count(*) FROM memberships WHERE organization_id = $1 AND role = 'admin'
"""
COUNT_USER_MEMBERSHIPS: Final = "SELECT count(*) FROM memberships WHERE user_id = $1"
# Tokens are also refused at authentication once the membership is gone; revoking them as well
# keeps the table honest (a revoked token says so instead of "not a member").
REVOKE_USER_TOKENS: Final = """
UPDATE oauth_tokens SET revoked_at = now()
WHERE user_id = $1 AND organization_id = $2 AND revoked_at IS NULL
"""
DELETE_USER: Final = "DELETE FROM users WHERE id = $1 AND NOT is_server_admin"

USER_ORGANIZATIONS: Final = """
SELECT o.id, o.name, m.role, o.created_at
FROM memberships m JOIN organizations o ON o.id = m.organization_id
WHERE m.user_id = $1
ORDER BY m.created_at, o.name
"""
SELECT_ORGANIZATION: Final = "SELECT id, name, created_at FROM organizations WHERE id = $1"
SELECT_USER_BY_EMAIL: Final = """
SELECT id, email, name, password_hash, is_server_admin FROM users WHERE lower(email) = lower($1)
"""
INSERT_USER: Final = """
INSERT INTO users (organization_id, email, name, password_hash) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING id
"""


async def list_members(conn: Connection, organization_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_MEMBERS, organization_id)


async def find_member(
    conn: Connection, organization_id: UUID, user_id: UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_MEMBER, organization_id, user_id)


async def insert_membership(
    conn: Connection, organization_id: UUID, user_id: UUID, role: str
) -> bool:
    """Add the user to the organization; False when they already belong to it."""
    return await conn.fetchval(INSERT_MEMBERSHIP, organization_id, user_id, role) is not None


async def update_role(conn: Connection, organization_id: UUID, user_id: UUID, role: str) -> None:
    await conn.execute(UPDATE_ROLE, organization_id, user_id, role)


async def delete_membership(conn: Connection, organization_id: UUID, user_id: UUID) -> None:
    await conn.execute(DELETE_MEMBERSHIP, organization_id, user_id)
    await conn.execute(REVOKE_USER_TOKENS, user_id, organization_id)


async def lock_organization(conn: Connection, organization_id: UUID) -> None:
    await conn.execute(LOCK_ORGANIZATION, organization_id)


async def count_admins(conn: Connection, organization_id: UUID) -> int:
    return int(await conn.fetchval(COUNT_ADMINS, organization_id))


async def delete_user_if_orphaned(conn: Connection, user_id: UUID) -> bool:
    """Delete an account that belongs to no organization any more (never a server admin), so
    its email can be used again; True when it was deleted."""
    if int(await conn.fetchval(COUNT_USER_MEMBERSHIPS, user_id)) > 0:
        return False
    return str(await conn.execute(DELETE_USER, user_id)) == "DELETE 1"


async def user_organizations(conn: Connection, user_id: UUID) -> list[asyncpg.Record]:
    """The organizations the user belongs to with their role, oldest membership first."""
    return await conn.fetch(USER_ORGANIZATIONS, user_id)


async def find_organization(conn: Connection, organization_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_ORGANIZATION, organization_id)


async def find_user_by_email(conn: Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_USER_BY_EMAIL, email)


async def insert_user(
    conn: Connection, organization_id: UUID, email: str, name: str, password_hash: str
) -> UUID | None:
    """Create an account; None when the email is taken (compared case-insensitively)."""
    value: UUID | None = await conn.fetchval(
        INSERT_USER, organization_id, email, name, password_hash
    )
    return value
