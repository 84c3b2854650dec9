"""Request ids and the error envelope (README, "HTTP API"), for every error the app can produce.

Litestar applies middleware per route, so an unknown route never reaches one; the request id is
therefore created lazily, by whichever of handler or exception handler asks first, and cached
in the request scope.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any
from uuid import UUID

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from levered.db.errors import translate
from levered.errors import EMPTY_BODY, LeveredError, RateLimited, Unavailable, ValidationError
from levered.schemas.common import ErrorBody, ErrorEnvelope, ErrorMeta, ResponseMeta

log = logging.getLogger("levered.server")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `([^`]+)`")

HTTP_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def request_id(request: Request[Any, Any, Any]) -> str:
    """The id of this request: the caller's ``X-Request-ID`` when sane, else a new one."""
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        given = request.headers.get("x-request-id")
        rid = given if given and _CLIENT_ID.match(given) else secrets.token_hex(8)
        state["request_id"] = rid
    return str(rid)


def meta(request: Request[Any, Any, Any], organization_id: object = None) -> ResponseMeta:
    return ResponseMeta(
        request_id(request), None if organization_id is None else str(organization_id)
    )


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    rid = request_id(request)
    body = ErrorEnvelope(ErrorBody(code, message, details), ErrorMeta(rid))
    return Response(
        body,
        status_code=status,
        media_type=MediaType.JSON,
        headers={"x-request-id": rid, **(headers or {})},
    )


def handle_domain_error(request: Request[Any, Any, Any], exc: LeveredError) -> Response[Any]:
    headers = None
    if isinstance(exc, (RateLimited, Unavailable)):
        headers = {"retry-after": str(exc.retry_after)}
    return error_response(request, exc.status, exc.code, exc.message, exc.details, headers)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        return error_response(
            request, 400, "validation_error", _validation_message(exc), _validation_details(exc)
        )
    if status >= 500:
        return handle_unexpected(request, exc)
    code = HTTP_CODES.get(status, "error")
    message = exc.detail or code.replace("_", " ")
    if status == 404 and message in ("Not Found", "not found"):
        message = _not_found(request)
    headers = dict(exc.headers or {})
    return error_response(request, status, code, message, None, headers)


def _not_found(request: Request[Any, Any, Any]) -> str:
    """What a 404 from routing means: usually an id that is not a UUID where a route takes
    one (``/api/v2/optimizations/123``), which Litestar reports as no route at all."""
    path = request.url.path
    given = path.rstrip("/").split("/")
    for route in request.app.routes:
        pattern = route.path.split("/")
        if len(pattern) != len(given):
            continue
        bad = []
        for expected, segment in zip(pattern, given, strict=True):
            if expected.endswith(":uuid}"):
                try:
                    UUID(segment)
                except ValueError:
                    bad.append(segment)
            elif not (expected.startswith("{") or expected == segment):
                break
        else:
            if bad:
                return f"{bad[0]!r} is not an id (ids are UUIDs) in {request.method} {path}"
    return f"no route for {request.method} {path}"


TOO_DEEP = "while deserializing"
"""In msgspec's ``RecursionError`` message: a body nested deeper than the decoder's stack."""


def handle_too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """A request body nested past the decoder's depth (msgspec raises ``RecursionError``, which
    is no validation error, so it escaped as a 500) is the client's malformed input; any other
    recursion error stays a 500."""
    if TOO_DEEP not in str(exc):
        return handle_unexpected(request, exc)
    return handle_domain_error(
        request,
        ValidationError(
            "invalid request body: JSON nested too deeply to decode",
            details=[{"path": "$", "message": "nested too deeply"}],
        ),
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    translated = translate(exc)
    if translated is not None:
        log.warning("request %s: %s", request_id(request), exc)
        return handle_domain_error(request, translated)
    log.exception("request %s failed", request_id(request), exc_info=exc)
    return error_response(
        request,
        500,
        "internal_error",
        f"unexpected server error; quote request id {request_id(request)} when reporting it",
    )


def _validation_message(exc: ValidationException) -> str:
    details = _validation_details(exc)
    if details:
        first = details[0]
        items = exc.extra if isinstance(exc.extra, list) else []
        given = items[0].get("source") if items and isinstance(items[0], dict) else "body"
        source = str(getattr(given, "value", given))  # Litestar's ParamType enum, or a str
        if source in ("query", "path", "header", "cookie") and items[0].get("key"):
            return f"invalid {source} parameter {items[0]['key']}: {first['message']}"
        if first["message"] == EMPTY_BODY:
            return EMPTY_BODY
        where = f" at {first['path']}" if first.get("path") else ""
        return f"invalid request body{where}: {first['message']}"
    return str(exc.detail)


def _validation_details(exc: ValidationException) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key = item.get("key")
            message = str(item.get("message", ""))
            if item.get("source") == "body" and key == "data":
                key = None  # Litestar's name for the body itself: the root, "$"
                if message == "'data'":  # its KeyError for a request without a body
                    message = EMPTY_BODY
            path = f"$.{key}" if key and not str(key).startswith("$") else str(key or "$")
            # msgspec reports an unknown or missing field at its parent object; name the field.
            named = _NAMED_FIELD.match(message)
            if named:
                path = f"{path}.{named.group(1)}"
            out.append({"path": path, "message": message})
    if not out and exc.detail:
        out.append({"path": "$", "message": str(exc.detail)})
    return out


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LeveredError: handle_domain_error,
    HTTPException: handle_http_exception,
    RecursionError: handle_too_deep,
    Exception: handle_unexpected,
}
