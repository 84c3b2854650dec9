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
from levered.services.roles import check_role, required_role
from levered.services.scopes import check_scope, required_scope


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def _scoped(request: Request[Any, Any, Any], principal: Principal) -> Principal:
    """Refuse (403) a key that lacks the scope this route needs, naming the scope, and a user
    whose role is below the one it needs, naming both roles: the one place both are checked."""
    # The serving fast path is a bare ASGI app: it has no route handler, hence nothing declared.
    handler = request.scope.get("route_handler")
    opt = handler.opt if handler is not None else {}
    method, path = request.method, request.url.path
    check_scope(principal.scopes, required_scope(method, path, opt.get("scope")))
    check_role(principal, required_role(method, path, opt.get("role")))
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
