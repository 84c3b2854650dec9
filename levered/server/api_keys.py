"""``/api/v2/api-keys``: create, list and revoke the organization's API keys."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from levered.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyResponse
from levered.server.envelope import meta
from levered.services import api_keys as service
from levered.services.auth import Principal


class ApiKeyController(Controller):
    path = "/api/v2/api-keys"
    tags = ("api-keys",)

    @post(summary="Create an API key; the response is the only time its secret is shown.")
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[ApiKeyCreate],
    ) -> ApiKeyCreated:
        return await service.create_api_key(
            request.app.state.pool, principal, data, meta(request, principal.organization_id)
        )

    @get(summary="List the organization's API keys (revoked included), newest first.")
    async def list_keys(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> ApiKeyList:
        return await service.list_api_keys(
            request.app.state.pool, principal, meta(request, principal.organization_id)
        )

    @delete(
        "/{key_id:uuid}",
        status_code=200,
        summary="Revoke an API key: refused from the next request on. Revoking twice is harmless.",
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        key_id: FromPath[UUID],
    ) -> ApiKeyResponse:
        return await service.revoke_api_key(
            request.app.state.pool, principal, key_id, meta(request, principal.organization_id)
        )
