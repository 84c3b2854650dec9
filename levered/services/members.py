"""Members of an organization: add (new account with an initial password), invite, list,
change role, remove; and accepting an invite.

Rules worth knowing:

* The organization in the path must be the one the caller's credentials act for; any other is
  404, whether it exists or not, so an admin of one organization learns nothing about another.
* An organization always keeps an admin: removing or demoting its last one is a 409
  ``last_admin`` (the organization's row is locked while counting, so two concurrent demotions
  cannot both succeed).
* Adding a member creates an account. An email that already has an account is refused (409
  ``account_exists``): such a person is *invited*, and accepting takes their own current
  password — an organization admin can never set or reset the password of an account that
  other organizations share.
* Removing a member revokes their tokens for the organization; an account left in no
  organization at all is deleted (never a server administrator), so its email can be reused.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final
from uuid import UUID

import anyio.to_thread
import asyncpg

from levered.db import Connection
from levered.db import invites as invite_db
from levered.db import memberships as db
from levered.errors import AuthenticationError, Conflict, NotFound, ValidationError
from levered.schemas.common import ResponseMeta
from levered.schemas.organizations import (
    Invite,
    InviteAccept,
    InviteAccepted,
    InviteCreate,
    InviteCreated,
    InviteList,
    Member,
    MemberCreate,
    MemberList,
    MemberResponse,
    MemberUpdate,
)
from levered.services.auth import Principal
from levered.services.passwords import hash_password, verify_password
from levered.services.tokens import digest, new_token

INVITE_LIFETIME: Final = timedelta(days=7)
INVITE_PREFIX: Final = "lvinv"
MIN_PASSWORD: Final = 8
MEMBER_FIELDS: Final = ("email", "name", "role", "created_at", "updated_at")
INVITE_FIELDS: Final = (
    "id",
    "organization_id",
    "email",
    "role",
    "created_at",
    "expires_at",
    "accepted_at",
)


def _member(record: asyncpg.Record) -> dict[str, Any]:
    return {"user_id": record["id"]} | {name: record[name] for name in MEMBER_FIELDS}


def _invite(record: asyncpg.Record) -> dict[str, Any]:
    return {name: record[name] for name in INVITE_FIELDS}


def _own(principal: Principal, organization_id: UUID) -> UUID:
    """The path's organization, if it is the caller's; else 404 (never "it exists")."""
    if organization_id != principal.organization_id:
        raise NotFound(
            f"no organization {organization_id} among these credentials' (a session acts for "
            "one organization: `levered orgs switch` to it first)"
        )
    return organization_id


async def list_members(
    pool: asyncpg.Pool, principal: Principal, organization_id: UUID, meta: ResponseMeta
) -> MemberList:
    org = _own(principal, organization_id)
    async with pool.acquire() as conn:
        records = await db.list_members(conn, org)
    return MemberList([Member(**_member(r)) for r in records], meta)


async def add_member(
    pool: asyncpg.Pool,
    principal: Principal,
    organization_id: UUID,
    data: MemberCreate,
    meta: ResponseMeta,
) -> MemberResponse:
    org = _own(principal, organization_id)
    email = data.email.strip()
    # argon2id takes tens of milliseconds of CPU: keep it off the event loop.
    password_hash = await anyio.to_thread.run_sync(hash_password, data.password)
    async with pool.acquire() as conn, conn.transaction():
        user_id = await db.insert_user(conn, org, email, data.name, password_hash)
        if user_id is None:
            raise Conflict(
                f"an account with the email {email} already exists: invite it instead "
                "(`levered users invite`); accepting takes that account's own password",
                code="account_exists",
                details={"field": "$.email"},
            )
        await db.insert_membership(conn, org, user_id, data.role)
        record = await db.find_member(conn, org, user_id)
    assert record is not None
    return MemberResponse(**_member(record), meta=meta)


async def change_role(
    pool: asyncpg.Pool,
    principal: Principal,
    organization_id: UUID,
    user_id: UUID,
    data: MemberUpdate,
    meta: ResponseMeta,
) -> MemberResponse:
    org = _own(principal, organization_id)
    async with pool.acquire() as conn, conn.transaction():
        await db.lock_organization(conn, org)
        record = await _existing_member(conn, org, user_id)
        if record["role"] == "admin" and data.role != "admin":
            await _keep_an_admin(conn, org, "demote")
        if record["role"] != data.role:
            await db.update_role(conn, org, user_id, data.role)
            record = await _existing_member(conn, org, user_id)
    return MemberResponse(**_member(record), meta=meta)


async def remove_member(
    pool: asyncpg.Pool,
    principal: Principal,
    organization_id: UUID,
    user_id: UUID,
    meta: ResponseMeta,
) -> MemberResponse:
    org = _own(principal, organization_id)
    async with pool.acquire() as conn, conn.transaction():
        await db.lock_organization(conn, org)
        record = await _existing_member(conn, org, user_id)
        if record["role"] == "admin":
            await _keep_an_admin(conn, org, "remove")
        await db.delete_membership(conn, org, user_id)
        await db.delete_user_if_orphaned(conn, user_id)
    return MemberResponse(**_member(record), meta=meta)


async def _existing_member(conn: Connection, org: UUID, user_id: UUID) -> asyncpg.Record:
    record = await db.find_member(conn, org, user_id)
    if record is None:
        raise NotFound(f"no member {user_id} in this organization")
    return record


async def _keep_an_admin(conn: Connection, org: UUID, action: str) -> None:
    if await db.count_admins(conn, org) <= 1:
        raise Conflict(
            f"cannot {action} the last admin of the organization: make another member admin "
            "first (`levered users role USER admin`)",
            code="last_admin",
        )


async def create_invite(
    pool: asyncpg.Pool,
    principal: Principal,
    organization_id: UUID,
    data: InviteCreate,
    meta: ResponseMeta,
) -> InviteCreated:
    org = _own(principal, organization_id)
    email = data.email.strip()
    token = new_token(INVITE_PREFIX)
    async with pool.acquire() as conn, conn.transaction():
        existing = await db.find_user_by_email(conn, email)
        if existing is not None and await db.find_member(conn, org, existing["id"]) is not None:
            raise Conflict(
                f"{email} is already a member of this organization",
                code="already_member",
                details={"field": "$.email"},
            )
        record = await invite_db.insert_invite(
            conn, org, digest(token), email, data.role, principal.user_id, INVITE_LIFETIME
        )
    return InviteCreated(**_invite(record), token=token, meta=meta)


async def list_invites(
    pool: asyncpg.Pool, principal: Principal, organization_id: UUID, meta: ResponseMeta
) -> InviteList:
    org = _own(principal, organization_id)
    async with pool.acquire() as conn:
        records = await invite_db.list_invites(conn, org)
    return InviteList([Invite(**_invite(r)) for r in records], meta)


async def accept_invite(
    pool: asyncpg.Pool, data: InviteAccept, meta: ResponseMeta
) -> InviteAccepted:
    """Claim the invite and join its organization: with a new account (``password`` sets it)
    or an existing one (``password`` must be its current one). A wrong password leaves the
    invite unused."""
    token_hash = digest(data.token)
    async with pool.acquire() as conn:
        found = await invite_db.find_invite(conn, token_hash)
        if found is None:
            raise NotFound("unknown invite token (mistyped, or revoked by the organization)")
        if found["accepted_at"] is not None:
            raise Conflict("this invite was already accepted", code="invite_used")
        if not found["live"]:
            raise Conflict("this invite expired; ask for a new one", code="invite_expired")
        user = await db.find_user_by_email(conn, found["email"])
    if user is not None:
        ok = await anyio.to_thread.run_sync(verify_password, user["password_hash"], data.password)
        if not ok:
            raise AuthenticationError(
                f"{found['email']} already has an account: give its current password to accept"
            )
        password_hash = None
    else:
        if len(data.password) < MIN_PASSWORD:
            raise ValidationError(
                f"the new account's password needs at least {MIN_PASSWORD} characters",
                details=[{"path": "$.password", "message": "too short"}],
            )
        password_hash = await anyio.to_thread.run_sync(hash_password, data.password)
    async with pool.acquire() as conn, conn.transaction():
        invite = await invite_db.claim_invite(conn, token_hash)
        if invite is None:  # accepted or expired concurrently
            raise Conflict("this invite is no longer valid", code="invite_used")
        org = invite["organization_id"]
        created = password_hash is not None
        if password_hash is not None:
            user_id = await db.insert_user(conn, org, invite["email"], data.name, password_hash)
            if user_id is None:
                raise Conflict("an account with this email was just created; try again")
        else:
            assert user is not None
            user_id = user["id"]
        if not await db.insert_membership(conn, org, user_id, invite["role"]):
            raise Conflict("you are already a member of this organization", code="already_member")
        await invite_db.set_accepted_by(conn, invite["id"], user_id)
    return InviteAccepted(
        organization_id=org,
        user_id=user_id,
        email=invite["email"],
        role=invite["role"],
        created_account=created,
        meta=meta,
    )
