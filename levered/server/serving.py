"""``POST /api/v2/optimizations/{id}/serve`` and ``POST /api/v2/optimizations/best-variant``.

Public by default (they reveal only a variant), metered per client address by a token bucket;
``LEVERED_SERVE_REQUIRE_KEY=true`` makes them take an API key. A request that carries
credentials anyway (an API key, or a user's token from ``levered login``) is checked (401 when
wrong), is not metered, and sees only its own organization's optimizations.
The lifespan here owns the per-process serving state (cache + LISTEN connection), the exposure
buffer (flushed on shutdown) and the numba warm-up.

Fast path: Litestar's POST machinery (body parsing into the signature model, the kwargs model,
response building) costs about two thirds of a serve over HTTP, so the lifespan wraps the app's
ASGI handler with :class:`FastServe`, which answers the two serve routes itself — same body
Structs (decoded strictly), same service, same response Struct, same error envelope — and hands
everything it does not handle plainly to Litestar unchanged: bodies that do not decode (with the
bytes replayed, so Litestar's 400 is the one it always gave), bodies without a small
``content-length``, non-canonical ids. The Litestar handlers below stay as the documented
(OpenAPI) definition of both routes and as that fallback.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit
from uuid import UUID

import msgspec
from litestar import Controller, Litestar, Request, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.types import ASGIApp, HTTPScope, Receive, ReceiveMessage, Scope, Send

from levered.bandit.sampler import warm_up
from levered.db.errors import translate
from levered.errors import LeveredError, RateLimited, Unavailable
from levered.schemas.common import ErrorBody, ErrorEnvelope, ErrorMeta, ResponseMeta
from levered.schemas.serving import BestVariantRequest, ServeRequest, ServeResponse, with_meta
from levered.server.auth import provide_api_principal, provide_principal
from levered.server.envelope import _CLIENT_ID, meta
from levered.server.serve_auth import ServeCredentials
from levered.services.auth import Principal
from levered.services.exposure_buffer import ExposureBuffer
from levered.services.exposure_spool import ExposureSpool
from levered.services.rate_limit import TokenBucketLimiter
from levered.services.serving import serve
from levered.services.serving_state import ServingState
from levered.settings import Settings

_DESCRIPTION = (
    'Body `{"anonymous_id"?, "context"?, "dry_run"?}` (all optional). By status: draft and '
    "archived → 409 `not_live`; live → a Thompson-sampled variant (holdout users get the "
    "baseline; sticky users keep their first decision); paused → the baseline; shipped and "
    "completed → the current winner for the context. Records the exposure unless `dry_run`. "
    "A context key that is not a context factor of the optimization is a 400 naming the key and "
    "listing the declared factors (`details[0].context_factors`); a value of the wrong type, or "
    "a NUL (U+0000) in `anonymous_id` or a context value, is a 400 naming the field. Public "
    "unless the server requires an API key; unauthenticated callers are rate-limited per "
    "address (429 with `Retry-After`). Details: docs/serving.md."
)


@dataclass
class ServingRuntime:
    state: ServingState
    buffer: ExposureBuffer
    limiter: TokenBucketLimiter | None
    require_key: bool
    credentials: ServeCredentials = field(default_factory=ServeCredentials)


async def serve_caller(request: Request[Any, Any, Any]) -> Principal | None:
    """The API key's principal when one is sent (or required), else None after metering the
    client address. Called by the handlers directly: a Litestar dependency costs ≈ 18 µs per
    request, a tenth of a serve."""
    runtime: ServingRuntime = request.app.state.serving
    headers = request.headers
    if runtime.require_key or "x-api-key" in headers:
        credential = headers.get("x-api-key") or headers.get("authorization") or ""
        return await runtime.credentials.principal(
            credential, lambda: provide_api_principal(request)
        )
    if "authorization" in headers:  # optional credentials: an API key or a user's token
        return await runtime.credentials.principal(
            headers["authorization"], lambda: provide_principal(request)
        )
    if runtime.limiter is not None:
        address = request.client.host if request.client else "unknown"
        wait = runtime.limiter.acquire(address)
        if wait > 0:
            raise RateLimited(
                f"too many serve requests from {address}; retry later",
                retry_after=runtime.limiter.retry_after(wait),
            )
    return None


_ERRORS: Final = {
    status: ResponseSpec(data_container=ErrorEnvelope, description=text)
    for status, text in (
        (401, "A wrong API key or token was sent, or a key is required and missing."),
        (404, "No such optimization (or another organization's, for a caller with a key)."),
        (409, "`not_live`: the optimization is a draft or archived; show your fallback."),
        (429, "`rate_limited`: too many requests from this address; see `Retry-After`."),
        (503, "The database is unreachable for a load or a sticky claim; retry."),
    )
}


class ServingController(Controller):
    path = "/api/v2/optimizations"
    tags = ("serving",)

    @post(
        "/{optimization_id:uuid}/serve",
        status_code=200,
        responses=_ERRORS,
        summary="Pick the variant to show this user now.",
        description=_DESCRIPTION,
    )
    async def serve_one(
        self,
        request: Request[Any, Any, Any],
        optimization_id: FromPath[UUID],
        data: JSONBody[ServeRequest | None] = None,
    ) -> ServeResponse:
        caller = await serve_caller(request)
        runtime: ServingRuntime = request.app.state.serving
        served, organization_id = await serve(
            runtime.state,
            runtime.buffer,
            optimization_id,
            data or ServeRequest(),
            caller.organization_id if caller else None,
        )
        return with_meta(served, meta(request, organization_id))

    @post(
        "/best-variant",
        status_code=200,
        responses=_ERRORS,
        summary="Same as `/{id}/serve`, with `optimization_id` in the body.",
        description=_DESCRIPTION,
    )
    async def best_variant(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[BestVariantRequest],
    ) -> ServeResponse:
        caller = await serve_caller(request)
        runtime: ServingRuntime = request.app.state.serving
        body = ServeRequest(
            anonymous_id=data.anonymous_id, context=data.context, dry_run=data.dry_run
        )
        served, organization_id = await serve(
            runtime.state,
            runtime.buffer,
            data.optimization_id,
            body,
            caller.organization_id if caller else None,
        )
        return with_meta(served, meta(request, organization_id))


# -- the fast path -----------------------------------------------------------------------------

log = logging.getLogger("levered.server")
_PREFIX: Final = "/api/v2/optimizations/"
_SERVE_SUFFIX: Final = "/serve"
_BEST: Final = _PREFIX + "best-variant"
_UUID_LEN: Final = 36
_FAST_MAX_BODY: Final = 64 * 1024  # larger bodies go through Litestar (its 5 MiB limit, its 413)
_SERVE_DECODER: Final = msgspec.json.Decoder(ServeRequest | None)
_BEST_DECODER: Final = msgspec.json.Decoder(BestVariantRequest)
_ENCODER: Final = msgspec.json.Encoder()
_JSON_HEADERS: Final = (b"content-type", b"application/json")
_RNG: Final = random.Random(secrets.randbits(128))


class FastServe:
    """The app's ASGI handler, with ``POST …/{id}/serve`` and ``POST …/best-variant`` answered
    directly (see the module docstring); every other request goes to ``inner`` untouched."""

    def __init__(self, inner: ASGIApp, runtime: ServingRuntime) -> None:
        self.inner = inner
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Litestar types HTTP methods as an enum-like Literal set; ASGI delivers a plain str.
        if scope["type"] != "http" or cast("HTTPScope", scope)["method"] != "POST":  # type: ignore[comparison-overlap]
            return await self.inner(scope, receive, send)
        path: str = scope["path"]
        if not path.startswith(_PREFIX):
            return await self.inner(scope, receive, send)
        optimization_id: UUID | None = None
        if path == _BEST:
            pass
        elif len(path) == len(_PREFIX) + _UUID_LEN + len(_SERVE_SUFFIX) and path.endswith(
            _SERVE_SUFFIX
        ):
            try:
                optimization_id = UUID(path[len(_PREFIX) : len(_PREFIX) + _UUID_LEN])
            except ValueError:
                return await self.inner(scope, receive, send)
        else:
            return await self.inner(scope, receive, send)
        length = -1
        credentials = False
        given_id: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"x-api-key" or name == b"authorization":
                credentials = True
            elif name == b"x-request-id":
                given_id = value
        if not 0 <= length <= _FAST_MAX_BODY:
            return await self.inner(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            if optimization_id is None:
                best = _BEST_DECODER.decode(body)
                optimization_id = best.optimization_id
                request: ServeRequest | None = ServeRequest(
                    anonymous_id=best.anonymous_id, context=best.context, dry_run=best.dry_run
                )
            else:
                request = _SERVE_DECODER.decode(body) if body else None
        except (msgspec.DecodeError, ValueError):
            # Litestar's own parsing decides (lax where it is lax) and words the 400.
            return await self.inner(scope, _replay(body, receive), send)
        rid = _request_id(scope, given_id)
        try:
            caller = await self._caller(scope, receive, credentials)
            runtime = self.runtime
            served, organization_id = await serve(
                runtime.state,
                runtime.buffer,
                optimization_id,
                request or ServeRequest(),
                caller.organization_id if caller else None,
            )
            payload = _ENCODER.encode(with_meta(served, ResponseMeta(rid, str(organization_id))))
        except Exception as exc:  # every failure becomes the error envelope
            return await _send_error(send, rid, exc)
        await _send(send, 200, payload, [])

    async def _caller(self, scope: Scope, receive: Receive, credentials: bool) -> Principal | None:
        runtime = self.runtime
        if credentials or runtime.require_key:
            return await serve_caller(Request(scope, receive))
        limiter = runtime.limiter
        if limiter is not None:
            client = scope.get("client")
            address = client[0] if client else "unknown"
            wait = limiter.acquire(address)
            if wait > 0:
                raise RateLimited(
                    f"too many serve requests from {address}; retry later",
                    retry_after=limiter.retry_after(wait),
                )
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first hands back the body already read, then defers to the real one."""
    sent = False

    async def replay() -> ReceiveMessage:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return cast("Receive", replay)


def _request_id(scope: Scope, given: bytes | None) -> str:
    """envelope.request_id's rule (the caller's ``X-Request-ID`` when sane), without a Request."""
    text = given.decode("latin-1") if given else None
    # 16 hex digits like envelope's, from a seeded PRNG: a request id is a label, not a secret,
    # and os.urandom (secrets) was ≈ 2 % of a serve.
    rid = text if text and _CLIENT_ID.match(text) else f"{_RNG.getrandbits(64):016x}"
    scope.setdefault("state", {})["request_id"] = rid
    return rid


async def _send_error(send: Send, rid: str, exc: Exception) -> None:
    """envelope.handle_domain_error / handle_unexpected, for the fast path."""
    error = exc if isinstance(exc, LeveredError) else translate(exc)
    if error is None:
        log.exception("request %s failed", rid, exc_info=exc)
        error = LeveredError(f"unexpected server error; quote request id {rid} when reporting it")
    elif not isinstance(exc, LeveredError):
        log.warning("request %s: %s", rid, exc)
    headers = [(b"x-request-id", rid.encode())]
    if isinstance(error, (RateLimited, Unavailable)):
        headers.append((b"retry-after", str(error.retry_after).encode()))
    body = ErrorEnvelope(ErrorBody(error.code, error.message, error.details), ErrorMeta(rid))
    await _send(send, error.status, _ENCODER.encode(body), headers)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                _JSON_HEADERS,
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def spool_of(settings: Settings) -> ExposureSpool | None:
    """The disk spool of this server's served exposures: ``<data dir>/spool/<database>``, one
    directory per database so that rows are only ever replayed into the database they were
    served from. None without a configured data directory (an app embedded in a test)."""
    if not settings.data_dir or not settings.database_url:
        return None
    target = urlsplit(settings.database_url)
    where = f"{target.hostname}:{target.port}{target.path}"
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    return ExposureSpool(Path(settings.data_dir).expanduser() / "spool" / digest)


def serving_lifespan(
    settings: Settings,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The lifespan step after the pool: warm the kernels, start the state and the buffer;
    on shutdown write every buffered exposure before the pool closes."""

    @asynccontextmanager
    async def serving(app: Litestar) -> AsyncIterator[None]:
        await asyncio.to_thread(warm_up)
        _RNG.seed(secrets.randbits(128))  # per process, even when the module was imported pre-fork
        state = ServingState(app.state.pool, settings.database_url)
        buffer = ExposureBuffer(app.state.pool, spool=spool_of(settings))
        limiter = (
            TokenBucketLimiter(settings.serve_rate_limit, settings.serve_rate_burst)
            if settings.serve_rate_limit > 0
            else None
        )
        runtime = ServingRuntime(state, buffer, limiter, settings.serve_require_key)
        app.state.serving = runtime
        await state.start()
        buffer.start()
        litestar_handler = app.asgi_handler
        if app.cors_config is None:  # FastServe sits outside Litestar's CORS middleware
            app.asgi_handler = FastServe(litestar_handler, runtime)
        try:
            yield
        finally:
            app.asgi_handler = litestar_handler
            await buffer.close()
            await state.close()

    return serving
