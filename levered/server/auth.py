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


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    async with database_deadline("checking the credentials"):
        return await authenticate(request.app.state.pool, _bearer(request))


async def provide_api_principal(request: Request[Any, Any, Any]) -> Principal:
    token = _bearer(request) or request.headers.get("x-api-key")
    async with database_deadline("checking the API key"):
        return await authenticate(request.app.state.pool, token, api_key_only=True)


DEPENDENCIES = {
    "principal": Provide(provide_principal),
    "api_principal": Provide(provide_api_principal),
}
