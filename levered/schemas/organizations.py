"""Wire schemas of organizations, members, invites and switching organization.

Roles are ``admin`` (everything), ``member`` (optimizations, metrics, models) and ``viewer``
(read-only); docs/teams.md has the table. An invite's token appears in exactly one body,
:class:`InviteCreated` (the server keeps only its SHA-256).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

import msgspec

from levered.schemas.common import ResponseMeta

Role = Literal["admin", "member", "viewer"]
ROLE_NAMED: Final[dict[str, Role]] = {"admin": "admin", "member": "member", "viewer": "viewer"}
"""A stored role (``memberships.role``, whose CHECK admits only these) as a :data:`Role`:
an unknown name is a ``KeyError``, never a silently wrong type."""
OrganizationName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, description="The organization's name.")
]
Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$", description="Login email."
    ),
]
Password = Annotated[
    str,
    msgspec.Meta(
        min_length=8, max_length=1000, description="At least 8 characters; stored as argon2id."
    ),
]
PersonName = Annotated[str, msgspec.Meta(max_length=200, description="Display name.")]


class OrganizationCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: OrganizationName


class Organization(msgspec.Struct, frozen=True, kw_only=True):
    """An organization as the caller sees it: ``role`` is the caller's role in it (null for an
    API key), ``current`` whether the caller's credentials act for it."""

    id: UUID
    name: str
    role: Role | None
    current: bool
    created_at: datetime


class OrganizationResponse(Organization, frozen=True, kw_only=True):
    meta: ResponseMeta


class OrganizationList(msgspec.Struct, frozen=True):
    organizations: list[Organization]
    meta: ResponseMeta


class OrganizationSwitched(msgspec.Struct, frozen=True, kw_only=True):
    """A new token pair acting for ``organization`` (the same shape as ``/oauth/token``'s)."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    organization: Organization
    meta: ResponseMeta


class MemberCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Create an account with an initial password and add it (an existing account is invited
    instead: accepting takes its own password)."""

    email: Email
    password: Password
    role: Role = "member"
    name: PersonName = ""


class MemberUpdate(msgspec.Struct, forbid_unknown_fields=True):
    role: Role


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """A user's membership: ``created_at`` is when they joined, ``updated_at`` the last role
    change."""

    user_id: UUID
    email: str
    name: str
    role: Role
    created_at: datetime
    updated_at: datetime


class MemberResponse(Member, frozen=True, kw_only=True):
    meta: ResponseMeta


class MemberList(msgspec.Struct, frozen=True):
    members: list[Member]
    meta: ResponseMeta


class InviteCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    role: Role = "member"


class Invite(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    organization_id: UUID
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None


class InviteCreated(Invite, frozen=True, kw_only=True):
    """The only time the invite token is shown: hand it to the invitee
    (``levered users accept TOKEN``)."""

    token: str
    meta: ResponseMeta


class InviteList(msgspec.Struct, frozen=True):
    invites: list[Invite]
    meta: ResponseMeta


class InviteAccept(msgspec.Struct, forbid_unknown_fields=True):
    """``password`` sets the new account's password, or — when the invited email already has
    an account — must be that account's current password (an invite never resets one). A new
    password needs at least 8 characters."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    name: PersonName = ""


class InviteAccepted(msgspec.Struct, frozen=True, kw_only=True):
    organization_id: UUID
    user_id: UUID
    email: str
    role: Role
    created_account: bool
    meta: ResponseMeta
