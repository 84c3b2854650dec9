"""An async HTTP client for the management API, shared by the CLI and the dashboard.

It returns the decoded JSON documents the API sends (the CLI's ``--json`` prints them as is),
and turns the error envelope into the domain errors of :mod:`levered.errors`, so every caller
maps failures the same way (exit codes in the CLI, a status line in the dashboard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from levered.errors import (
    AuthenticationError,
    Conflict,
    LeveredError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    Unavailable,
    ValidationError,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_BY_STATUS: dict[int, type[LeveredError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
}

Json = dict[str, Any]


class LeveredAPI:
    """``async with LeveredAPI(url, token) as api: await api.get("/api/v2/me")``."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"user-agent": "levered-client"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, transport=transport, timeout=timeout
        )

    async def __aenter__(self) -> LeveredAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Json:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any = None) -> Json:
        return await self.request("POST", path, json=body)

    async def put(self, path: str, body: Any) -> Json:
        return await self.request("PUT", path, json=body)

    async def patch(self, path: str, body: Any) -> Json:
        return await self.request("PATCH", path, json=body)

    async def delete(self, path: str) -> Json:
        return await self.request("DELETE", path)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
    ) -> Json:
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._http.request(method, path, params=clean, json=json, data=data)
        except httpx.TransportError as exc:
            raise Unavailable(
                f"cannot reach the Levered server at {self.base_url} "
                f"({exc.__class__.__name__}); is `levered server start` "
                f"running?"
            ) from exc
        return raise_for_error(response)


def raise_for_error(response: httpx.Response) -> Json:
    """The decoded body of a success, or the domain error an error envelope describes."""
    if response.is_success and (response.status_code == 204 or not response.content):
        return {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body if isinstance(body, dict) else {"data": body}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message, code, details = (
            str(error.get("message", "")),
            error.get("code"),
            error.get("details"),
        )
    elif isinstance(error, str):  # OAuth endpoints answer in RFC 6749 form
        message, code, details = str(body.get("error_description", error)), error, None
    else:
        message, code, details = response.text[:200] or response.reason_phrase, None, None
    retry_after = int(response.headers.get("retry-after", "1") or 1)
    if response.status_code == 429:
        raise RateLimited(message, retry_after=retry_after)
    if response.status_code >= 500:
        raise Unavailable(
            message or f"server error {response.status_code}",
            retry_after=retry_after,
            details=details,
        )
    cls = _BY_STATUS.get(response.status_code, LeveredError)
    raise cls(message, details=details, code=code if isinstance(code, str) else None)


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
