"""Litestar dependencies that authenticate the caller.

Handlers that need a caller declare ``principal: NamedDependency[Principal]`` (management: user
token or API key) or ``api_principal: NamedDependency[Principal]`` (ingestion: API key as
Bearer or ``X-API-Key``).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from levered.db.pool import database_deadline
from levered.services.auth import Principal, authenticate
from levered.services.scopes import check_scope, required_scope


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def _scoped(request: Request[Any, Any, Any], principal: Principal) -> Principal:
    """Refuse (403 naming the scope) a key that lacks the scope this route needs."""
    # The serving fast path is a bare ASGI app: it has no route handler, hence no declared scope.
    handler = request.scope.get("route_handler")
    declared = handler.opt.get("scope") if handler is not None else None
    check_scope(principal.scopes, required_scope(request.method, request.url.path, declared))
    return principal


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    async with database_deadline("checking the credentials"):
        principal = await authenticate(request.app.state.pool, _bearer(request))
    return _scoped(request, principal)


async def provide_api_principal(request: Request[Any, Any, Any]) -> Principal:
    token = _bearer(request) or request.headers.get("x-api-key")
    async with database_deadline("checking the API key"):
        principal = await authenticate(request.app.state.pool, token, api_key_only=True)
    return _scoped(request, principal)


DEPENDENCIES = {
    "principal": Provide(provide_principal),
    "api_principal": Provide(provide_api_principal),
}
