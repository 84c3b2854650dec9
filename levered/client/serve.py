"""Python SDK for serving: which variant to show, with a fallback that never fails the page.

::

    from levered.client.serve import ServeClient

    levered = ServeClient("https://levered.example", timeout=0.3)
    served = levered.serve(OPT_ID, anonymous_id=user_id, context={"country": "DE"},
                           fallback={"headline": "Ship faster", "cta": "Get started"})
    render(served.variant)          # the decision, or the fallback when Levered is unreachable

:class:`ServeClient` (sync, thread-safe) and :class:`AsyncServeClient` (asyncio) share one
behaviour; :func:`serve` / :func:`aserve` are one-shot helpers that open a client per call.

- **Never raises**: any failure — server down, timeout, 5xx, 409 ``not_live`` (draft/archived),
  404, 400 — returns ``Served(variant=fallback, fallback=True, error=...)``. Statuses the
  caller should fix (400, 401, 403, 404) are logged as warnings, and ``error`` carries the
  server's message (a 400 names the field, e.g. a context key that is not a context factor),
  so a bug in the call is never a silent fallback.
- **Timeout is a budget**: ``timeout`` bounds the whole call, retries included: each attempt
  gets what is left as its httpx timeout, and the async client also enforces it as a hard
  deadline (a sync call against a server that trickles bytes can overrun it by one phase).
- **Retries**: transport errors, 429 and 5xx are retried up to ``retries`` times with a short
  jittered backoff (20 ms × 2^attempt), honouring ``Retry-After`` only when it fits the budget.
- **TTL cache** (optional, ``cache_ttl`` seconds): a successful decision for (optimization,
  anonymous id, context) is reused without a request until it expires. Cached serves send no
  request, so they record no exposure — the server's exposure count then undercounts repeated
  views, which is harmless for last-touch attribution within the TTL.

- **Errors to a callback**: ``on_error(served)`` (optional) is called with every fallback a
  failure caused, so an app can count or report them; an exception it raises is logged, never
  propagated.
- **Disabled (test) mode**: ``disabled=True`` sends nothing and returns the fallback at once
  (``error="disabled"``, ``on_error`` not called), like posthog-python's ``disabled``: for
  tests and local development without a server.

This module imports neither litestar nor asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

log = logging.getLogger("levered.client.serve")

DEFAULT_TIMEOUT_S: Final = 0.5
DEFAULT_RETRIES: Final = 2
RETRYABLE: Final = frozenset({429, 500, 502, 503, 504})
CALLER_ERRORS: Final = frozenset({400, 401, 403, 404})
BACKOFF_S: Final = 0.02


@dataclass(frozen=True)
class Served:
    """A decision, or the caller's fallback (``fallback`` True, ``error`` says why)."""

    variant: Mapping[str, Any]
    optimization_id: str
    anonymous_id: str | None = None
    variant_number: int | None = None
    variant_key: str | None = None
    holdout: bool = False
    propensity: float | None = None
    model_version: int | None = None
    decision_id: str | None = None
    fallback: bool = False
    error: str | None = None
    cached: bool = False


@dataclass
class _Cache:
    ttl: float
    size: int
    entries: OrderedDict[str, tuple[float, Served]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> Served | None:
        with self.lock:
            hit = self.entries.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self.entries[key]
                return None
            return hit[1]

    def put(self, key: str, served: Served) -> None:
        with self.lock:
            self.entries[key] = (time.monotonic() + self.ttl, served)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


class _Core:
    """What both clients share: request shape, cache, outcome → :class:`Served`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float,
        retries: int,
        cache_ttl: float | None,
        cache_size: int,
        on_error: Callable[[Served], object] | None = None,
        disabled: bool = False,
    ) -> None:
        self.on_error = on_error
        self.disabled = disabled
        self.base_url = base_url.rstrip("/")
        self.headers = {"user-agent": "levered-serve", "content-type": "application/json"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self.retries = retries
        self.cache = _Cache(cache_ttl, cache_size) if cache_ttl else None

    def url(self, optimization_id: str) -> str:
        return f"{self.base_url}/api/v2/optimizations/{optimization_id}/serve"

    @staticmethod
    def body(anonymous_id: str | None, context: Mapping[str, Any] | None, dry_run: bool) -> bytes:
        payload: dict[str, Any] = {}
        if anonymous_id is not None:
            payload["anonymous_id"] = anonymous_id
        if context:
            payload["context"] = dict(context)
        if dry_run:
            payload["dry_run"] = True
        return json.dumps(payload).encode()

    @staticmethod
    def cache_key(
        optimization_id: str,
        anonymous_id: str | None,
        context: Mapping[str, Any] | None,
        dry_run: bool,
    ) -> str | None:
        if anonymous_id is None:
            return None  # a new random user each call: nothing to reuse
        ctx = json.dumps(dict(context or {}), sort_keys=True, default=str)
        return f"{optimization_id}\x00{anonymous_id}\x00{ctx}\x00{dry_run}"

    def cached(self, key: str | None) -> Served | None:
        if self.cache is None or key is None:
            return None
        hit = self.cache.get(key)
        return None if hit is None else _replace_cached(hit)

    def remember(self, key: str | None, served: Served) -> None:
        if self.cache is not None and key is not None and not served.fallback:
            self.cache.put(key, served)

    def outcome(
        self,
        response: httpx.Response,
        optimization_id: str,
        fallback: Mapping[str, Any],
        anonymous_id: str | None = None,
    ) -> Served | None:
        """The decision, a fallback for a final failure, or None when worth retrying."""
        status = response.status_code
        if status == 200:
            data = response.json()
            return Served(
                variant=data["variant"],
                optimization_id=str(data["optimization_id"]),
                anonymous_id=data["anonymous_id"],
                variant_number=data["variant_number"],
                variant_key=data["variant_key"],
                holdout=data["holdout"],
                propensity=data["propensity"],
                model_version=data["model_version"],
                decision_id=data["decision_id"],
            )
        if status in RETRYABLE:
            return None
        message = _error_message(response)
        if status in CALLER_ERRORS:
            log.warning(
                "serve %s: HTTP %d %s; using the fallback", optimization_id, status, message
            )
        return _fallback(optimization_id, fallback, f"HTTP {status}: {message}", anonymous_id)

    def pause(self, attempt: int, response: httpx.Response | None, deadline: float) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget does not allow."""
        wait = BACKOFF_S * float(2**attempt) * (0.5 + random.random() / 2)
        if response is not None and "retry-after" in response.headers:
            with contextlib.suppress(ValueError):
                wait = max(wait, float(response.headers["retry-after"]))
        if time.monotonic() + wait >= deadline:
            return None
        return wait


def _replace_cached(served: Served) -> Served:
    return Served(**{**served.__dict__, "cached": True})


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except Exception:
        return response.reason_phrase or "error"


def _fallback(
    optimization_id: str,
    fallback: Mapping[str, Any],
    error: str,
    anonymous_id: str | None = None,
) -> Served:
    """The caller's fallback, for the user it was asked for (an app logs or caches by it)."""
    return Served(fallback, optimization_id, anonymous_id, fallback=True, error=error)


DISABLED: Final = "disabled"


def _reported(core: _Core, served: Served) -> Served:
    """Hand a failure's fallback to ``on_error``; the callback can never break the caller."""
    if served.fallback and core.on_error is not None and served.error != DISABLED:
        try:
            core.on_error(served)
        except Exception:
            log.exception("the on_error callback raised")
    return served


class ServeClient:
    """Synchronous serving client (``httpx.Client``, keep-alive); safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        cache_ttl: float | None = None,
        cache_size: int = 10_000,
        transport: httpx.BaseTransport | None = None,
        on_error: Callable[[Served], object] | None = None,
        disabled: bool = False,
    ) -> None:
        self._core = _Core(
            base_url, api_key, timeout, retries, cache_ttl, cache_size, on_error, disabled
        )
        self._http = httpx.Client(transport=transport, timeout=timeout)

    def __enter__(self) -> ServeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def serve(
        self,
        optimization_id: str,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        fallback: Mapping[str, Any],
        dry_run: bool = False,
    ) -> Served:
        optimization_id = str(optimization_id)
        if self._core.disabled:
            return _fallback(optimization_id, fallback, DISABLED, anonymous_id)
        try:
            served = self._serve(optimization_id, anonymous_id, context, fallback, dry_run)
        except Exception as exc:  # the contract: never raise into the page being rendered
            log.warning("serve %s failed: %r; using the fallback", optimization_id, exc)
            served = _fallback(optimization_id, fallback, repr(exc), anonymous_id)
        return _reported(self._core, served)

    def _serve(
        self,
        optimization_id: str,
        anonymous_id: str | None,
        context: Mapping[str, Any] | None,
        fallback: Mapping[str, Any],
        dry_run: bool,
    ) -> Served:
        core = self._core
        key = core.cache_key(optimization_id, anonymous_id, context, dry_run)
        hit = core.cached(key)
        if hit is not None:
            return hit
        body = core.body(anonymous_id, context, dry_run)
        deadline = time.monotonic() + core.timeout
        error = "no attempt made"
        for attempt in range(core.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            response: httpx.Response | None = None
            try:
                response = self._http.post(
                    core.url(optimization_id),
                    content=body,
                    headers=core.headers,
                    timeout=remaining,
                )
                served = core.outcome(response, optimization_id, fallback, anonymous_id)
                if served is not None:
                    core.remember(key, served)
                    return served
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt == core.retries:
                break
            wait = core.pause(attempt, response, deadline)
            if wait is None:
                break
            time.sleep(wait)
        return _fallback(optimization_id, fallback, error, anonymous_id)


class AsyncServeClient:
    """The asyncio twin of :class:`ServeClient` (``httpx.AsyncClient``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        cache_ttl: float | None = None,
        cache_size: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
        on_error: Callable[[Served], object] | None = None,
        disabled: bool = False,
    ) -> None:
        self._core = _Core(
            base_url, api_key, timeout, retries, cache_ttl, cache_size, on_error, disabled
        )
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

    async def __aenter__(self) -> AsyncServeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def serve(
        self,
        optimization_id: str,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        fallback: Mapping[str, Any],
        dry_run: bool = False,
    ) -> Served:
        optimization_id = str(optimization_id)
        if self._core.disabled:
            return _fallback(optimization_id, fallback, DISABLED, anonymous_id)
        try:
            served = await asyncio.wait_for(
                self._serve(optimization_id, anonymous_id, context, fallback, dry_run),
                self._core.timeout + 0.05,
            )
        except Exception as exc:  # the contract: never raise into the request being handled
            log.warning("serve %s failed: %r; using the fallback", optimization_id, exc)
            served = _fallback(optimization_id, fallback, repr(exc), anonymous_id)
        return _reported(self._core, served)

    async def _serve(
        self,
        optimization_id: str,
        anonymous_id: str | None,
        context: Mapping[str, Any] | None,
        fallback: Mapping[str, Any],
        dry_run: bool,
    ) -> Served:
        core = self._core
        key = core.cache_key(optimization_id, anonymous_id, context, dry_run)
        hit = core.cached(key)
        if hit is not None:
            return hit
        body = core.body(anonymous_id, context, dry_run)
        deadline = time.monotonic() + core.timeout
        error = "no attempt made"
        for attempt in range(core.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            response: httpx.Response | None = None
            try:
                response = await self._http.post(
                    core.url(optimization_id),
                    content=body,
                    headers=core.headers,
                    timeout=remaining,
                )
                served = core.outcome(response, optimization_id, fallback, anonymous_id)
                if served is not None:
                    core.remember(key, served)
                    return served
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt == core.retries:
                break
            wait = core.pause(attempt, response, deadline)
            if wait is None:
                break
            await asyncio.sleep(wait)
        return _fallback(optimization_id, fallback, error, anonymous_id)


def serve(
    base_url: str,
    optimization_id: str,
    anonymous_id: str | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    fallback: Mapping[str, Any],
    api_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    dry_run: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> Served:
    """One serve with a client of its own (use :class:`ServeClient` to keep connections)."""
    with ServeClient(
        base_url, api_key, timeout=timeout, retries=retries, transport=transport
    ) as client:
        return client.serve(
            optimization_id, anonymous_id, context, fallback=fallback, dry_run=dry_run
        )


async def aserve(
    base_url: str,
    optimization_id: str,
    anonymous_id: str | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    fallback: Mapping[str, Any],
    api_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,  # noqa: ASYNC109 - a budget incl. retries, see above
    retries: int = DEFAULT_RETRIES,
    dry_run: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Served:
    """The asyncio twin of :func:`serve`."""
    async with AsyncServeClient(
        base_url, api_key, timeout=timeout, retries=retries, transport=transport
    ) as client:
        return await client.serve(
            optimization_id, anonymous_id, context, fallback=fallback, dry_run=dry_run
        )
