"""``/api/v2/organizations`` (list, create, switch), their members and invites, and
``/api/v2/invites/accept``.

Who may call what is decided where every route's scope is (:mod:`levered.server.auth`): the
member and invite routes need the ``admin`` role (and, for an API key, the ``admin`` scope even
to read: they list people's emails), derived from their path; creating an organization needs a
server administrator.
Accepting an invite takes no credentials: the invite token in the body is the credential (in
the body, not the path, so it does not end up in access logs).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from levered.schemas.organizations import (
    InviteAccept,
    InviteAccepted,
    InviteCreate,
    InviteCreated,
    InviteList,
    MemberCreate,
    MemberList,
    MemberResponse,
    MemberUpdate,
    OrganizationCreate,
    OrganizationList,
    OrganizationResponse,
    OrganizationSwitched,
)
from levered.server.envelope import meta
from levered.services import members
from levered.services import organizations as service
from levered.services.auth import Principal
from levered.services.roles import SERVER_ADMIN

MEMBERS = "/{organization_id:uuid}/members"
MEMBER = MEMBERS + "/{user_id:uuid}"
INVITES = "/{organization_id:uuid}/invites"


class OrganizationController(Controller):
    path = "/api/v2/organizations"
    tags = ("organizations",)

    @get(summary="The organizations the caller belongs to, with its role in each.")
    async def list_organizations(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> OrganizationList:
        return await service.list_organizations(
            request.app.state.pool, principal, meta(request, principal.organization_id)
        )

    @post(
        opt={"role": SERVER_ADMIN},
        summary="Create an organization (server administrators); its creator becomes its admin.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[OrganizationCreate],
    ) -> OrganizationResponse:
        return await service.create_organization(
            request.app.state.pool, principal, data, meta(request, principal.organization_id)
        )

    @post(
        "/{organization_id:uuid}/switch",
        status_code=200,
        opt={"role": "viewer"},
        summary="New user tokens acting for another organization the user is a member of.",
    )
    async def switch(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        organization_id: FromPath[UUID],
    ) -> OrganizationSwitched:
        return await service.switch_organization(
            request.app.state.pool, principal, organization_id, meta(request, organization_id)
        )


class MemberController(Controller):
    path = "/api/v2/organizations"
    tags = ("members",)

    @get(MEMBERS, summary="The organization's members and their roles.")
    async def list_members(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        organization_id: FromPath[UUID],
    ) -> MemberList:
        return await members.list_members(
            request.app.state.pool, principal, organization_id, meta(request, organization_id)
        )

    @post(MEMBERS, summary="Create an account with an initial password and add it as a member.")
    async def add_member(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        organization_id: FromPath[UUID],
        data: JSONBody[MemberCreate],
    ) -> MemberResponse:
        return await members.add_member(
            request.app.state.pool, principal, organization_id, data, meta(request, organization_id)
        )

    @patch(MEMBER, summary="Change a member's role (never the last admin's away from admin).")
    async def change_role(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        organization_id: FromPath[UUID],
        user_id: FromPath[UUID],
        data: JSONBody[MemberUpdate],
    ) -> MemberResponse:
        return await members.change_role(
            request.app.state.pool,
            principal,
            organization_id,
            user_id,
            data,
            meta(request, organization_id),
        )

    @delete(
        MEMBER,
        status_code=200,
        summary="Remove a member (never the last admin); their tokens for it are revoked.",
    )
    async def remove_member(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        organization_id: FromPath[UUID],
        user_id: FromPath[UUID],
    ) -> MemberResponse:
        return await members.remove_member(
            request.app.state.pool,
            principal,
            organization_id,
            user_id,
            meta(request, organization_id),
        )

    @get(INVITES, summary="The organization's invites, newest first.")
    async def list_invites(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        organization_id: FromPath[UUID],
    ) -> InviteList:
        return await members.list_invites(
            request.app.state.pool, principal, organization_id, meta(request, organization_id)
        )

    @post(INVITES, summary="Invite an email with a role; the one-time token is shown once.")
    async def invite(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        organization_id: FromPath[UUID],
        data: JSONBody[InviteCreate],
    ) -> InviteCreated:
        return await members.create_invite(
            request.app.state.pool, principal, organization_id, data, meta(request, organization_id)
        )


class InviteController(Controller):
    path = "/api/v2/invites"
    tags = ("members",)

    @post(
        "/accept",
        status_code=200,
        summary="Accept an invite: create the account (or prove an existing one) and join.",
    )
    async def accept(
        self, request: Request[Any, Any, Any], data: JSONBody[InviteAccept]
    ) -> InviteAccepted:
        accepted = await members.accept_invite(request.app.state.pool, data, meta(request))
        return accepted
