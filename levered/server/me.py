"""``GET /api/v2/me``: who the credentials belong to (``levered whoami``)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency

from levered.schemas.oauth import Me
from levered.server.envelope import meta
from levered.services import oauth
from levered.services.auth import Principal


class MeController(Controller):
    path = "/api/v2/me"
    tags = ("me",)

    @get(summary="The caller's user (null for an API key) and organization.")
    async def me(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> Me:
        return await oauth.whoami(
            request.app.state.pool, principal, meta(request, principal.organization_id)
        )
