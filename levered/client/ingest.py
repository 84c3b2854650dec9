"""Python SDK for the ingestion API: ``track_exposure`` / ``track_reward`` with background batching.

Two front ends over one engine:

* :class:`AsyncIngestor` for asyncio code: ``async with AsyncIngestor(url, key) as ingest:``
  then ``ingest.track_exposure(...)`` (a plain, non-blocking call). A task on the running loop
  sends the batches.
* :class:`Ingestor` for synchronous code: the same engine on its own event loop in a daemon
  thread. Every method may be called from any thread.

Behaviour (both):

* **Batching**: events are sent in batches of at most ``batch_size`` (≤ 500, the API's limit)
  per kind, as soon as a full batch is queued or every ``flush_interval`` seconds, on
  :meth:`flush`, on close, and — for :class:`Ingestor`, and for :class:`AsyncIngestor` when it
  talks to a real network — at interpreter exit (``atexit``).
* **Exactly once**: each event gets its ``idempotency_key`` (uuid4) and its ``timestamp`` when it
  is *tracked*, so a batch resent after a timeout, a 503 or a lost response is deduplicated by
  the server (the response counts those events as ``duplicates``).
* **Retries**: on network errors, 429 and 5xx the same batch is resent after an exponential
  backoff with jitter (``0.1 s × 2^attempt``, capped at ``max_backoff``, the upper half of the
  interval chosen at random), never sooner than the server's ``Retry-After``. Retries go on
  while the server stays down; other errors are not retryable: the batch is dropped and
  logged with the server's message — a 400 (no event of the batch valid) counts its events in
  ``stats.rejected``, any other refusal (401 invalid or revoked key, 403, 409) in
  ``stats.failed``. A 413 splits the batch in two.
* **Bounded memory, drop-oldest**: at most ``max_queued`` events wait (default 100 000, plus the
  one batch in flight). When the server stays down and the queue is full, tracking a new event
  drops the *oldest* queued one (recent data is worth more to a bandit than old data) and
  counts it in ``stats.dropped``; tracking never blocks the application.
* **Close**: :meth:`AsyncIngestor.aclose` / :meth:`Ingestor.close` send what is queued, waiting
  at most ``grace`` / ``timeout`` seconds; what is still unsent then is dropped and counted.

* **Errors to a callback**: ``on_error(failure)`` (optional) is called with an
  :class:`IngestFailure` — the kind, the events and why — for every event the SDK gives up on:
  rejected by the server (a 400 batch, the bad events of a 207), refused (401, 403, 409…),
  dropped (queue full, or unsent at close). It runs on the sender's thread; an exception it
  raises is logged, never propagated. The same cases are also logged and counted in ``stats``.
* **Disabled (test) mode**: ``disabled=True`` checks each call's arguments (a naive
  ``timestamp`` still raises), counts it in ``stats.tracked`` and sends nothing (no sender
  task, no connection), like posthog-python's ``disabled``: for tests and local development
  without a server.

``transport=`` takes any ``httpx.AsyncBaseTransport`` (tests run against the app in-process with
``httpx.ASGITransport``). This module imports neither litestar nor asyncpg.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import random
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from uuid import UUID, uuid4

import httpx
import msgspec

log = logging.getLogger("levered.client.ingest")

Kind = Literal["exposures", "rewards"]
MAX_BATCH: Final = 500
RETRYABLE: Final = frozenset({429, 500, 502, 503, 504})
_encode = msgspec.json.encode


@dataclass(frozen=True)
class IngestFailure:
    """Events the SDK gave up on, as ``on_error`` receives them."""

    kind: Kind
    events: list[dict[str, Any]]
    reason: Literal["rejected", "refused", "dropped"]
    """``rejected``: the server judged the events invalid; ``refused``: it refused the batch
    whatever it held (bad key, missing scope, wrong warehouse); ``dropped``: never sent."""
    status: int | None
    """The HTTP status (None when nothing was sent)."""
    message: str


@dataclass
class IngestStats:
    """What happened to the tracked events so far (read at any time; updated in place)."""

    tracked: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    """Events the server judged invalid: rejected in a 207, or every event of a 400 batch."""
    failed: int = 0
    """Events in batches refused whatever they held (401, 403, 409, other 4xx)."""
    dropped: int = 0
    """Events discarded unsent: queue full (oldest first), or still queued at close."""
    batches: int = 0
    retries: int = 0


class _Queue:
    """Two FIFO queues (one per event kind) sharing one capacity; drop-oldest, thread-safe."""

    def __init__(self, capacity: int, stats: IngestStats) -> None:
        self.capacity = capacity
        self._stats = stats
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._queues: dict[Kind, deque[tuple[int, dict[str, Any]]]] = {
            "exposures": deque(),
            "rewards": deque(),
        }

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def put(
        self, kind: Kind, event: dict[str, Any]
    ) -> tuple[int, tuple[Kind, dict[str, Any]] | None]:
        """Queue an event; returns how many events of ``kind`` now wait, and the oldest event
        dropped to make room (None when there was room)."""
        with self._lock:
            self._stats.tracked += 1
            dropped: tuple[Kind, dict[str, Any]] | None = None
            if len(self) >= self.capacity:
                exposures, rewards = self._queues["exposures"], self._queues["rewards"]
                oldest: Kind = (
                    "exposures"
                    if not rewards or (exposures and exposures[0][0] < rewards[0][0])
                    else "rewards"
                )
                dropped = oldest, self._queues[oldest].popleft()[1]
                self._stats.dropped += 1
            queue = self._queues[kind]
            queue.append((next(self._seq), event))
            return len(queue), dropped

    def take(self, limit: int) -> tuple[Kind, list[dict[str, Any]]] | None:
        """Up to ``limit`` events of one kind, oldest kind first; None when empty."""
        with self._lock:
            waiting = [(q[0][0], kind) for kind, q in self._queues.items() if q]
            if not waiting:
                return None
            kind = min(waiting)[1]
            queue = self._queues[kind]
            return kind, [queue.popleft()[1] for _ in range(min(limit, len(queue)))]

    def clear(self) -> dict[Kind, list[dict[str, Any]]]:
        """Empty the queues; returns what they held, per kind."""
        with self._lock:
            held = {kind: [event for _, event in q] for kind, q in self._queues.items() if q}
            for queue in self._queues.values():
                queue.clear()
            return held


class AsyncIngestor:
    """Batching, retrying sender of events, run as a task on the current event loop."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        batch_size: int = MAX_BATCH,
        flush_interval: float = 1.0,
        max_queued: int = 100_000,
        max_backoff: float = 30.0,
        request_timeout: float = 30.0,
        on_error: Callable[[IngestFailure], object] | None = None,
        disabled: bool = False,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.stats = IngestStats()
        self._api_key = api_key
        self._transport = transport
        self._timeout = request_timeout
        self._queue = _Queue(max_queued, self.stats)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._flushes: list[asyncio.Future[None]] = []
        self._closing = False
        self._deadline: float | None = None
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._closed = False
        self.on_error = on_error
        self.disabled = disabled
        if transport is None and not disabled:
            atexit.register(self._send_at_exit)

    # -- tracking (any thread, never blocks) ----------------------------------------------------

    def track_exposure(
        self,
        anonymous_id: str,
        optimization_id: UUID | str,
        variant: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Queue an exposure; returns its idempotency key."""
        event: dict[str, Any] = {
            "anonymous_id": anonymous_id,
            "optimization_id": str(optimization_id),
            "variant": dict(variant),
        }
        if context:
            event["context"] = dict(context)
        return self._track("exposures", event, timestamp, idempotency_key)

    def track_reward(
        self,
        anonymous_id: str,
        name: str,
        value: float = 1.0,
        *,
        optimization_id: UUID | str | None = None,
        properties: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Queue a reward (global unless ``optimization_id``); returns its idempotency key."""
        event: dict[str, Any] = {"anonymous_id": anonymous_id, "name": name, "value": value}
        if optimization_id is not None:
            event["optimization_id"] = str(optimization_id)
        if properties:
            event["properties"] = dict(properties)
        return self._track("rewards", event, timestamp, idempotency_key)

    def _track(
        self, kind: Kind, event: dict[str, Any], timestamp: datetime | None, key: str | None
    ) -> str:
        if self._closed:
            raise RuntimeError("this ingestor is closed")
        if timestamp is not None and timestamp.utcoffset() is None:
            raise ValueError("timestamp must carry a UTC offset (a naive time is ambiguous)")
        key = key or uuid4().hex
        event["timestamp"] = timestamp or datetime.now(UTC)
        event["idempotency_key"] = key
        if self.disabled:
            self.stats.tracked += 1
            return key
        waiting, dropped = self._queue.put(kind, event)
        if dropped is not None:
            self._report(dropped[0], [dropped[1]], "dropped", None, "queue full: oldest dropped")
        if waiting >= self.batch_size:
            self._poke()
        return key

    def _report(
        self,
        kind: Kind,
        events: list[dict[str, Any]],
        reason: Literal["rejected", "refused", "dropped"],
        status: int | None,
        message: str,
    ) -> None:
        """Hand events given up on to ``on_error``; the callback can never break the SDK."""
        if self.on_error is None or not events:
            return
        try:
            self.on_error(IngestFailure(kind, events, reason, status, message))
        except Exception:
            log.exception("the on_error callback raised")

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    # -- lifecycle (on the ingestor's loop) -----------------------------------------------------

    async def start(self) -> None:
        if self._task is not None or self.disabled:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=self._transport,
            timeout=self._timeout,
            headers={
                "authorization": f"Bearer {self._api_key}",
                "user-agent": "levered-sdk",
                "content-type": "application/json",
            },
        )
        self._task = asyncio.create_task(self._run(), name="levered-ingestor")

    async def __aenter__(self) -> AsyncIngestor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def flush(self) -> None:
        """Return once every event tracked before this call was sent (or given up on)."""
        if self.disabled:
            return
        await self.start()
        assert self._loop is not None and self._wake is not None
        done: asyncio.Future[None] = self._loop.create_future()
        self._flushes.append(done)
        self._wake.set()
        await done

    async def aclose(self, grace: float = 10.0) -> None:
        """Send what is queued (for at most ``grace`` s), then stop; unsent events are dropped."""
        if self._closed:
            return
        if self.disabled:
            self._closed = True
            return
        await self.start()
        assert self._loop is not None and self._wake is not None and self._task is not None
        self._closing = True
        self._deadline = self._loop.time() + grace
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace + 1.0)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for kind, unsent in self._queue.clear().items():
            self.stats.dropped += len(unsent)
            self._report(kind, unsent, "dropped", None, f"still unsent after {grace} s at close")
        self._closed = True
        assert self._http is not None
        await self._http.aclose()
        with contextlib.suppress(Exception):
            atexit.unregister(self._send_at_exit)

    # -- the sender -----------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._closing and not self._flushes and len(self._queue) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            waiting, self._flushes = self._flushes, []
            while (batch := self._queue.take(self.batch_size)) is not None:
                await self._send(*batch)
                if self._gave_up():
                    break
            for future in waiting:
                if not future.done():
                    future.set_result(None)
            if self._closing:
                return

    def _gave_up(self) -> bool:
        assert self._loop is not None
        return self._deadline is not None and self._loop.time() >= self._deadline

    async def _send(self, kind: Kind, events: list[dict[str, Any]]) -> None:
        assert self._http is not None and self._loop is not None
        body = _encode({"events": events})
        for attempt in itertools.count():
            retry_after = 0.0
            try:
                response = await self._http.post(f"/api/v2/ingest/{kind}", content=body)
            except httpx.TransportError as exc:
                reason = f"{exc.__class__.__name__}: {exc}"
            else:
                status = response.status_code
                if status in (200, 207):
                    self._count(kind, response, events)
                    return
                if status == 413 and len(events) > 1:
                    half = len(events) // 2
                    await self._send(kind, events[:half])
                    await self._send(kind, events[half:])
                    return
                if status not in RETRYABLE:
                    self._refused(kind, events, response)
                    return
                reason = f"HTTP {status}"
                with contextlib.suppress(ValueError):
                    retry_after = float(response.headers.get("retry-after", "0"))
            delay = max(retry_after, self._backoff(attempt))
            if self._deadline is not None and self._loop.time() + delay > self._deadline:
                self.stats.dropped += len(events)
                log.warning("gave up on %d %s at close (%s)", len(events), kind, reason)
                self._report(kind, events, "dropped", None, f"gave up at close ({reason})")
                return
            self.stats.retries += 1
            log.info("ingestion retry %d in %.2f s (%s)", attempt + 1, delay, reason)
            await self._sleep(delay)

    def _refused(self, kind: Kind, events: list[dict[str, Any]], response: httpx.Response) -> None:
        """A final refusal. A 400 judged the events themselves (none of them valid): they are
        ``rejected``, like the bad events of a 207; any other status (401, 403, 409, …) refused
        the batch whatever it held: ``failed``."""
        rejected = response.status_code == 400
        if rejected:
            self.stats.rejected += len(events)
        else:
            self.stats.failed += len(events)
        message = _error_message(response)
        log.warning(
            "ingestion batch of %d %s refused (%d): %s",
            len(events),
            kind,
            response.status_code,
            message,
        )
        reason: Literal["rejected", "refused"] = "rejected" if rejected else "refused"
        self._report(kind, events, reason, response.status_code, message)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, 0.1 * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _count(self, kind: Kind, response: httpx.Response, events: list[dict[str, Any]]) -> None:
        try:
            body = response.json()
            accepted, duplicates = int(body["accepted"]), int(body["duplicates"])
            rejected = body.get("rejected") or []
        except (ValueError, KeyError, TypeError):
            accepted, duplicates, rejected = len(events), 0, []
        self.stats.batches += 1
        self.stats.accepted += accepted
        self.stats.duplicates += duplicates
        self.stats.rejected += len(rejected)
        if rejected:
            log.warning("%d event(s) rejected, first: %s", len(rejected), rejected[0])
            bad = [
                events[r["index"]]
                for r in rejected
                if isinstance(r, dict)
                and isinstance(r.get("index"), int)
                and 0 <= r["index"] < len(events)
            ]
            first = rejected[0]
            message = str(first.get("message", first)) if isinstance(first, dict) else str(first)
            self._report(kind, bad, "rejected", response.status_code, message)

    # -- interpreter exit -----------------------------------------------------------------------

    def _send_at_exit(self) -> None:
        """Best effort for an ingestor never closed: post what is queued, synchronously."""
        if self._closed or not len(self._queue):
            return
        with httpx.Client(
            base_url=self.base_url,
            timeout=5.0,
            headers={"authorization": f"Bearer {self._api_key}"},
        ) as http:
            while (batch := self._queue.take(self.batch_size)) is not None:
                kind, events = batch
                try:
                    http.post(f"/api/v2/ingest/{kind}", content=_encode({"events": events}))
                except httpx.HTTPError:
                    self.stats.dropped += len(events)


def _error_message(response: httpx.Response) -> str:
    """The error envelope's message (what the server says is wrong), else the raw text."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


class Ingestor:
    """The synchronous SDK: an :class:`AsyncIngestor` on its own loop in a daemon thread.

    ``Ingestor(url, key).track_exposure(...)`` from any thread; :meth:`close` (also run at
    interpreter exit) sends what is queued. ``transport`` must be an *async* httpx transport.
    """

    def __init__(self, base_url: str, api_key: str, **options: Any) -> None:
        self._engine = AsyncIngestor(base_url, api_key, **options)
        with contextlib.suppress(Exception):
            atexit.unregister(self._engine._send_at_exit)  # our close() covers exit
        self.stats = self._engine.stats
        self.disabled = self._engine.disabled
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="levered-ingestor", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._engine.start(), self._loop).result()
        self._closed = False
        atexit.register(self.close)

    def track_exposure(self, *args: Any, **kwargs: Any) -> str:
        """See :meth:`AsyncIngestor.track_exposure`."""
        return self._engine.track_exposure(*args, **kwargs)

    def track_reward(self, *args: Any, **kwargs: Any) -> str:
        """See :meth:`AsyncIngestor.track_reward`."""
        return self._engine.track_reward(*args, **kwargs)

    def flush(self, timeout: float | None = None) -> None:
        asyncio.run_coroutine_threadsafe(self._engine.flush(), self._loop).result(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._engine.aclose(grace=timeout), self._loop).result(
                timeout + 5.0
            )
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            if not self._thread.is_alive():
                self._loop.close()
            with contextlib.suppress(Exception):
                atexit.unregister(self.close)

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


LeveredClient = Ingestor
"""Alias: the name the ingestion docs use for the synchronous SDK."""
