"""The ingestion SDK against the real app: batching, exactly-once retries, close, bounded memory."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar

from levered.client import AsyncIngestor, Ingestor
from levered.server.app import create_app
from levered.settings import Settings
from tests.conftest import Org

pytestmark = pytest.mark.anyio

DESIGN = [{"name": "headline", "dtype": "str", "levels": ["a", "b"]}]
ATTRIBUTION = {"type": "last_touch", "conversion_window_hours": 24}
URL = "http://levered.test"


@pytest.fixture
async def live_app(settings: Settings) -> AsyncIterator[Litestar]:
    app = create_app(settings)
    async with app.lifespan():
        yield app


@pytest.fixture
async def optimization(conn: asyncpg.Connection, org: Org) -> UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO optimizations (organization_id, name, status, model_type, design_factors, "
        "attribution, holdout_percentage) VALUES ($1, 'x', 'live', 'cmab', $2, $3, 10) "
        "RETURNING id",
        org.id,
        DESIGN,
        ATTRIBUTION,
    )


class Flaky(httpx.AsyncBaseTransport):
    """Forwards to the app, with scripted trouble: ``plan`` holds, per request, one of
    ``"ok"``, ``"lost"`` (the server stores the batch, the client sees a 503),
    ``"refuse"`` (connection error, never reaches the server), ``"429"``."""

    def __init__(self, app: Litestar, plan: list[str] | None = None) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.plan = list(plan or [])
        self.down = False
        self.sizes: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        step = self.plan.pop(0) if self.plan else "ok"
        if self.down or step == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if step == "429":
            return httpx.Response(429, headers={"retry-after": "2"}, request=request)
        body = await request.aread()
        self.sizes.append(len(msgspec.json.decode(body)["events"]))
        response = await self.inner.handle_async_request(request)
        if step == "lost":
            await response.aread()
            return httpx.Response(503, headers={"retry-after": "0"}, request=request)
        return response


def no_sleep(ingestor: AsyncIngestor) -> list[float]:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    ingestor._sleep = record
    return delays


async def count(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM warehouse.{table}"))


async def test_batches_of_at_most_500_and_flush_on_close(
    live_app: Litestar, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    transport = Flaky(live_app)
    async with AsyncIngestor(URL, org.api_key, transport=transport, flush_interval=60) as sdk:
        for i in range(1203):
            sdk.track_exposure(f"u{i}", optimization, {"headline": "ab"[i % 2]})
        for i in range(7):
            sdk.track_reward(f"u{i}", "signup", optimization_id=optimization)
    assert await count(conn, "exposures") == 1203
    assert await count(conn, "rewards") == 7
    assert max(transport.sizes) == 500 and sum(transport.sizes) == 1210
    assert sdk.stats.accepted == 1210 and sdk.stats.dropped == 0 and sdk.stats.failed == 0


async def test_flush_sends_while_open(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    async with AsyncIngestor(URL, org.api_key, transport=Flaky(live_app), flush_interval=60) as sdk:
        sdk.track_reward("u1", "signup", 12.5, properties={"plan": "pro"})
        await sdk.flush()
        assert await conn.fetchval("SELECT value FROM warehouse.rewards") == 12.5


async def test_the_interval_flushes_without_being_asked(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    async with AsyncIngestor(
        URL, org.api_key, transport=Flaky(live_app), flush_interval=0.05
    ) as sdk:
        sdk.track_reward("u1", "signup")
        for _ in range(100):
            if await count(conn, "rewards"):
                break
            await asyncio.sleep(0.02)
        assert await count(conn, "rewards") == 1


async def test_a_503_after_storing_is_retried_exactly_once(
    live_app: Litestar, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    transport = Flaky(live_app, ["lost", "refuse", "ok"])
    sdk = AsyncIngestor(URL, org.api_key, transport=transport, flush_interval=60)
    delays = no_sleep(sdk)
    async with sdk:
        for i in range(300):
            sdk.track_exposure(f"u{i}", optimization, {"headline": "a"})
    assert await count(conn, "exposures") == 300  # stored by the "lost" attempt, never again
    assert sdk.stats.accepted == 0 and sdk.stats.duplicates == 300
    assert sdk.stats.retries == 2 and len(delays) == 2


async def test_429_retry_after_is_honoured(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    sdk = AsyncIngestor(URL, org.api_key, transport=Flaky(live_app, ["429"]), flush_interval=60)
    delays = no_sleep(sdk)
    async with sdk:
        sdk.track_reward("u", "signup")
    assert delays and delays[0] >= 2.0
    assert await count(conn, "rewards") == 1


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    sdk = AsyncIngestor(
        URL, "k", transport=httpx.MockTransport(lambda r: httpx.Response(200)), max_backoff=5
    )
    first = [sdk._backoff(0) for _ in range(200)]
    assert 0.05 <= min(first) < max(first) <= 0.1
    assert all(2.5 <= sdk._backoff(12) <= 5 for _ in range(50))
    assert sdk._backoff(3) > sdk._backoff(0) / 2


async def test_a_full_queue_drops_the_oldest_and_counts_them(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    transport = Flaky(live_app)
    transport.down = True
    sdk = AsyncIngestor(URL, org.api_key, transport=transport, max_queued=10, flush_interval=60)
    no_sleep(sdk)
    for i in range(25):  # queued before the sender starts: nothing in flight
        sdk.track_reward(f"u{i:02d}", "signup")
    assert sdk.stats.dropped == 15 and sdk.stats.tracked == 25
    transport.down = False
    async with sdk:
        pass
    kept = [
        r[0]
        for r in await conn.fetch(
            "SELECT anonymous_id FROM warehouse.rewards ORDER BY anonymous_id"
        )
    ]
    assert kept == [f"u{i:02d}" for i in range(15, 25)]


async def test_close_gives_up_after_its_grace_period(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    transport = Flaky(live_app)
    transport.down = True
    sdk = AsyncIngestor(URL, org.api_key, transport=transport, flush_interval=60)
    await sdk.start()
    for i in range(700):
        sdk.track_reward(f"u{i}", "signup")
    started = time.monotonic()
    await sdk.aclose(grace=0.5)
    assert time.monotonic() - started < 3
    assert sdk.stats.dropped == 700 and sdk.stats.accepted == 0
    with pytest.raises(RuntimeError, match="closed"):
        sdk.track_reward("late", "signup")


async def test_refused_batches_are_counted_not_retried(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    sdk = AsyncIngestor(URL, org.api_key, transport=Flaky(live_app), flush_interval=60)
    async with sdk:
        sdk.track_exposure("u", "00000000-0000-0000-0000-000000000000", {"headline": "a"})
        sdk.track_reward("u", "n" * 300)  # rejected (207), the next one stored
        sdk.track_reward("u", "ok")
    assert sdk.stats.failed == 1 and sdk.stats.retries == 0  # the 403 batch
    assert sdk.stats.rejected == 1 and sdk.stats.accepted == 1
    assert await count(conn, "rewards") == 1


async def test_a_batch_the_server_refuses_as_invalid_is_counted_as_rejected(
    live_app: Litestar, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    # A 400 (no event of the batch valid) refused the events themselves: they are rejected,
    # as one bad event of a 207 is, not `failed` (kept for batches refused whatever they held).
    sdk = AsyncIngestor(URL, org.api_key, transport=Flaky(live_app), flush_interval=60)
    async with sdk:
        sdk.track_exposure("u1", optimization, {"headline": "zzz"})  # not a level
        sdk.track_exposure("u2", optimization, {"colour": "a"})  # not a factor
    assert sdk.stats.rejected == 2 and sdk.stats.failed == 0 and sdk.stats.accepted == 0
    assert await count(conn, "exposures") == 0


@pytest.mark.parametrize(
    "key", ["lvk_nope", "lvk_nope1234_wrongsecret", "lvk_", "lvk_12345678"], ids=repr
)
async def test_an_invalid_api_key_is_called_invalid(
    live_app: Litestar, org: Org, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Whatever its shape, a key starting with lvk_ is an API key: the message says it is
    # invalid, never that the endpoint wants "an API key, not a user token".
    sdk = AsyncIngestor(URL, key, transport=Flaky(live_app), flush_interval=60)
    with caplog.at_level("WARNING", logger="levered.client.ingest"):
        async with sdk:
            sdk.track_reward("u", "signup")
    assert sdk.stats.failed == 1 and sdk.stats.rejected == 0
    [record] = [r for r in caplog.records if "refused" in r.getMessage()]
    message = record.getMessage()
    assert "(401)" in message and "invalid API key" in message, message
    assert "user token" not in message


async def test_a_revoked_api_key_is_called_revoked(
    live_app: Litestar, conn: asyncpg.Connection, org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE organization_id = $1", org.id)
    sdk = AsyncIngestor(URL, org.api_key, transport=Flaky(live_app), flush_interval=60)
    with caplog.at_level("WARNING", logger="levered.client.ingest"):
        async with sdk:
            sdk.track_reward("u", "signup")
    assert sdk.stats.failed == 1
    assert any("this API key was revoked" in r.getMessage() for r in caplog.records)


def test_naive_timestamps_are_refused_at_track_time() -> None:
    from datetime import datetime

    sdk = AsyncIngestor(URL, "k", transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with pytest.raises(ValueError, match="offset"):
        sdk.track_reward("u", "n", timestamp=datetime(2026, 1, 1))


# -- the synchronous Ingestor against a real server on loopback --------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not runner.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert runner.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.should_exit = True
        thread.join(10)


async def test_the_sync_ingestor_from_several_threads(
    server: str, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    def produce(sdk: Ingestor, start: int) -> None:
        for i in range(start, start + 400):
            sdk.track_exposure(f"u{i}", optimization, {"headline": "b"}, context={"n": i})

    def run() -> Any:
        with Ingestor(server, org.api_key, flush_interval=0.05) as sdk:
            threads = [threading.Thread(target=produce, args=(sdk, k * 400)) for k in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            sdk.track_reward("u1", "signup")
            sdk.flush(timeout=10)
            flushed = sdk.stats.accepted
        return flushed, sdk.stats

    flushed, stats = await asyncio.to_thread(run)
    assert flushed == 1201 and stats.accepted == 1201
    assert await count(conn, "exposures") == 1200
    assert await count(conn, "rewards") == 1
