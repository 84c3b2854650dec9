"""The SDKs' ``on_error`` callback and ``disabled`` (test) mode, against the real app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID

import asyncpg
import httpx
import pytest
from litestar import Litestar

from levered.client import AsyncIngestor, IngestFailure
from levered.client.serve import AsyncServeClient, Served
from levered.server.app import create_app
from levered.settings import Settings
from tests.conftest import Org

URL = "http://levered.test"
DESIGN = [{"name": "headline", "dtype": "str", "levels": ["a", "b"]}]
ATTRIBUTION = {"type": "last_touch", "conversion_window_hours": 24}
FALLBACK = {"headline": "a"}


@pytest.fixture
async def live_app(settings: Settings) -> AsyncIterator[Litestar]:
    app = create_app(settings)
    async with app.lifespan():
        yield app


async def _optimization(conn: asyncpg.Connection, org: Org, status: str = "live") -> UUID:
    value: UUID = await conn.fetchval(
        "INSERT INTO optimizations (organization_id, name, status, model_type, design_factors, "
        "attribution, holdout_percentage) VALUES ($1, 'x', $2, 'cmab', $3, $4, 10) "
        "RETURNING id",
        org.id,
        status,
        DESIGN,
        ATTRIBUTION,
    )
    return value


async def _serve_only_key(conn: asyncpg.Connection, org: Org) -> str:
    from levered.services.tokens import digest, new_api_key

    key, prefix = new_api_key()
    await conn.execute(
        "INSERT INTO api_keys (organization_id, label, prefix, secret_hash, scopes) "
        "VALUES ($1, 'serve', $2, $3, '{serve}')",
        org.id,
        prefix,
        digest(key),
    )
    return key


async def test_on_error_gets_refused_and_rejected_events(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    optimization = await _optimization(conn, org)
    failures: list[IngestFailure] = []
    transport = httpx.ASGITransport(app=live_app)
    async with AsyncIngestor(
        URL, org.api_key, transport=transport, on_error=failures.append
    ) as ingest:
        ingest.track_exposure("u1", optimization, {"headline": "a"})
        ingest.track_exposure("u2", optimization, {"headline": "nope"})  # not a level: 207
        await ingest.flush()
    assert ingest.stats.accepted == 1 and ingest.stats.rejected == 1
    (rejected,) = failures
    assert rejected.reason == "rejected" and rejected.status == 207
    assert [e["anonymous_id"] for e in rejected.events] == ["u2"]
    assert rejected.kind == "exposures" and rejected.message

    failures.clear()
    wrong_scope = await _serve_only_key(conn, org)
    async with AsyncIngestor(
        URL, wrong_scope, transport=transport, on_error=failures.append
    ) as ingest:
        for n in range(3):
            ingest.track_reward(f"u{n}", "signup")
        await ingest.flush()
    (refused,) = failures
    assert refused.reason == "refused" and refused.status == 403
    assert len(refused.events) == 3 and "ingest" in refused.message
    assert ingest.stats.failed == 3


async def test_a_raising_callback_never_breaks_the_sdk(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    calls: list[IngestFailure] = []

    def explode(failure: IngestFailure) -> None:
        calls.append(failure)
        raise RuntimeError("the app's callback is buggy")

    key = await _serve_only_key(conn, org)
    async with AsyncIngestor(
        URL, key, transport=httpx.ASGITransport(app=live_app), on_error=explode
    ) as ingest:
        ingest.track_reward("u1", "signup")
        await ingest.flush()
        ingest.track_reward("u2", "signup")  # still tracking after the callback raised
        await ingest.flush()
    assert len(calls) == 2 and ingest.stats.failed == 2


async def test_queue_overflow_reports_the_dropped_oldest_event() -> None:
    failures: list[IngestFailure] = []
    # Never started, so nothing is sent: the third event pushes the first out.
    ingest = AsyncIngestor(
        URL,
        "lvk_x",
        transport=httpx.MockTransport(lambda r: httpx.Response(500)),
        max_queued=2,
        on_error=failures.append,
    )
    for n in range(3):
        ingest.track_reward(f"u{n}", "signup")
    (dropped,) = failures
    assert dropped.reason == "dropped" and dropped.status is None
    assert [e["anonymous_id"] for e in dropped.events] == ["u0"]


async def test_disabled_ingestor_sends_nothing(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    optimization = await _optimization(conn, org)
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"accepted": 1, "duplicates": 0, "rejected": []})

    async with AsyncIngestor(
        URL, org.api_key, transport=httpx.MockTransport(record), disabled=True
    ) as ingest:
        key = ingest.track_exposure("u1", optimization, {"headline": "a"})
        ingest.track_reward("u1", "signup")
        await ingest.flush()
        with pytest.raises(ValueError, match="offset"):
            ingest.track_reward("u1", "signup", timestamp=datetime(2026, 1, 1))
    assert key and requests == []
    assert ingest.stats.tracked == 2 and ingest.stats.batches == 0
    assert await conn.fetchval("SELECT count(*) FROM warehouse.exposures") == 0


async def test_serve_on_error_and_disabled(
    live_app: Litestar, conn: asyncpg.Connection, org: Org
) -> None:
    draft = await _optimization(conn, org, "draft")
    live = await _optimization(conn, org)
    seen: list[Served] = []
    transport = httpx.ASGITransport(app=live_app)
    async with AsyncServeClient(URL, transport=transport, on_error=seen.append) as client:
        ok = await client.serve(live, "u1", fallback=FALLBACK)
        assert not ok.fallback
        refused = await client.serve(draft, "u1", fallback=FALLBACK)
        missing = await client.serve(str(uuid.uuid4()), "u1", fallback=FALLBACK)
    assert refused.fallback and missing.fallback
    assert seen == [refused, missing]
    assert "409" in (refused.error or "") and "404" in (missing.error or "")

    seen.clear()
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(500)

    async with AsyncServeClient(
        URL, transport=httpx.MockTransport(record), on_error=seen.append, disabled=True
    ) as client:
        off = await client.serve(live, "u2", fallback=FALLBACK)
    assert off.fallback and off.error == "disabled" and off.variant == FALLBACK
    assert seen == [] and requests == []  # nothing sent, and disabled is not an error
