"""Resolve which server and credentials a command uses, and run its API calls.

Precedence: ``--api-url`` > ``LEVERED_API_URL`` > config ``api_url`` > the local default;
``LEVERED_API_KEY`` > stored credentials for that URL. An expired access token is refreshed
silently with the stored refresh token (which rotates).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx

from cli.store import DEFAULT_API_URL, StoredToken, load_config, load_tokens, save_token
from levered.client.api import LeveredAPI
from levered.errors import AuthenticationError

T = TypeVar("T")
CLIENT_ID = "levered-cli"


# Tests swap in an in-process transport (httpx.ASGITransport) here.
def _default_transport() -> httpx.AsyncBaseTransport | None:
    return None  # httpx's own network transport


transport_factory: Callable[[], httpx.AsyncBaseTransport | None] = _default_transport


def api_url(flag: str | None = None) -> str:
    url = flag or os.environ.get("LEVERED_API_URL") or load_config().get("api_url")
    return str(url or DEFAULT_API_URL).rstrip("/")


async def _token(url: str) -> str | None:
    key = os.environ.get("LEVERED_API_KEY")
    if key:
        return key
    stored = load_tokens().get(url)
    if stored is None:
        return None
    if stored.api_key:
        return stored.api_key
    if stored.access_valid():
        return stored.access_token
    if stored.refresh_token:
        return await refresh(url, stored)
    return stored.access_token


async def refresh(url: str, stored: StoredToken) -> str:
    async with LeveredAPI(url, transport=transport_factory()) as api:
        try:
            body = await api.request(
                "POST",
                "/oauth/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": stored.refresh_token or "",
                    "client_id": CLIENT_ID,
                },
            )
        except AuthenticationError as exc:
            raise AuthenticationError("your session expired; run `levered login` again") from exc
        except Exception as exc:
            if getattr(exc, "status", None) == 400:
                save_token(url, None)
                raise AuthenticationError(
                    "your session expired; run `levered login` again"
                ) from exc
            raise
    save_token(url, token_from_response(body))
    return str(body["access_token"])


def token_from_response(body: dict[str, Any]) -> StoredToken:
    return StoredToken(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token"),
        expires_at=time.time() + float(body.get("expires_in", 3600)),
    )


def call(
    fn: Callable[[LeveredAPI], Awaitable[T]],
    *,
    url_flag: str | None = None,
    authenticated: bool | None = True,
) -> T:
    """Run ``fn`` with a client for the resolved server and credentials.

    ``authenticated``: True requires credentials, False sends none, None sends them when there
    are some (public endpoints that a server may configure to require a key).
    """
    url = api_url(url_flag)

    async def run() -> T:
        token = await _token(url) if authenticated is not False else None
        if authenticated and token is None:
            raise AuthenticationError(
                f"not logged in to {url}: run `levered login`, or set LEVERED_API_KEY"
            )
        async with LeveredAPI(url, token, transport=transport_factory()) as api:
            return await fn(api)

    return anyio.run(run)


def credentials(url: str) -> str:
    """The token for ``url`` (refreshed if needed), or an authentication error."""

    async def resolve() -> str | None:
        return await _token(url)

    token = anyio.run(resolve)
    if token is None:
        raise AuthenticationError(
            f"not logged in to {url}: run `levered login`, or set LEVERED_API_KEY"
        )
    return token
