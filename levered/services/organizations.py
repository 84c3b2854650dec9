"""Organizations: list the caller's, create one (server administrators), switch to another.

A user's credentials act for one organization at a time. Switching issues a new token pair for
the target organization — only if the user is a member of it — rather than widening the current
token, so every token still names exactly one organization and every query stays scoped by it.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg

from levered.db import memberships as db
from levered.db import organizations as org_db
from levered.errors import NotFound, PermissionDenied
from levered.schemas.common import ResponseMeta
from levered.schemas.organizations import (
    ROLE_NAMED,
    Organization,
    OrganizationCreate,
    OrganizationList,
    OrganizationResponse,
    OrganizationSwitched,
)
from levered.services.auth import Principal
from levered.services.oauth import issue_tokens

DEFAULT_CLIENT_ID = "levered-cli"


def _organization(record: asyncpg.Record, role: str | None, current: UUID) -> Organization:
    return Organization(
        id=record["id"],
        name=record["name"],
        role=None if role is None else ROLE_NAMED[role],
        current=record["id"] == current,
        created_at=record["created_at"],
    )


async def list_organizations(
    pool: asyncpg.Pool, principal: Principal, meta: ResponseMeta
) -> OrganizationList:
    """A user's organizations with their role in each; an API key's one organization."""
    async with pool.acquire() as conn:
        if principal.user_id is None:
            record = await db.find_organization(conn, principal.organization_id)
            found = [] if record is None else [_organization(record, None, record["id"])]
            return OrganizationList(found, meta)
        records = await db.user_organizations(conn, principal.user_id)
    return OrganizationList(
        [_organization(r, r["role"], principal.organization_id) for r in records], meta
    )


async def create_organization(
    pool: asyncpg.Pool, principal: Principal, data: OrganizationCreate, meta: ResponseMeta
) -> OrganizationResponse:
    """A new, empty organization on the managed warehouse; its creator (a server
    administrator, checked by the route's role) becomes its first admin."""
    assert principal.user_id is not None  # only a user can be a server administrator
    async with pool.acquire() as conn, conn.transaction():
        org_id = await org_db.insert_organization(conn, data.name.strip() or data.name)
        await db.insert_membership(conn, org_id, principal.user_id, "admin")
        record = await db.find_organization(conn, org_id)
    assert record is not None
    return OrganizationResponse(
        id=record["id"],
        name=record["name"],
        role="admin",
        current=record["id"] == principal.organization_id,
        created_at=record["created_at"],
        meta=meta,
    )


async def switch_organization(
    pool: asyncpg.Pool, principal: Principal, organization_id: UUID, meta: ResponseMeta
) -> OrganizationSwitched:
    """New tokens acting for ``organization_id``. Not being a member is indistinguishable from
    the organization not existing (404), so ids cannot be probed."""
    if principal.user_id is None:
        raise PermissionDenied(
            "an API key belongs to one organization and cannot switch; log in as a user",
            details={"required_auth": "user"},
        )
    async with pool.acquire() as conn, conn.transaction():
        member = await db.find_member(conn, organization_id, principal.user_id)
        record = await db.find_organization(conn, organization_id)
        if member is None or record is None:
            raise NotFound(f"no organization {organization_id} that you are a member of")
        tokens = await issue_tokens(
            conn,
            uuid4(),
            principal.user_id,
            organization_id,
            principal.client_id or DEFAULT_CLIENT_ID,
        )
    return OrganizationSwitched(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        organization=_organization(record, member["role"], organization_id),
        meta=meta,
    )
