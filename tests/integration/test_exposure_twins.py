"""A served exposure sent again through the ingestion API is stored once (issue #18, item 2).

The twin rule (levered/db/warehouse.py): same organization, optimization, anonymous id and
variant number, timestamps at most 60 s apart; the served row is the one kept, whichever of the
two arrives first. Serves go through the real app with its lifespan in the test's event loop,
so the tests can hold the serve buffer and flush it themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from litestar import Litestar

from levered.db import serving as serving_db
from levered.db.pool import connect
from levered.server.app import create_app
from levered.services.exposure_buffer import ExposureBuffer
from levered.settings import Settings
from tests.conftest import Org
from tests.integration.test_serving import SPACE, definition, insert_metric
from tests.integration.test_training import make_optimization

pytestmark = pytest.mark.anyio

API = "/api/v2/optimizations"
EXPOSURES = "/api/v2/ingest/exposures"
REWARDS = "/api/v2/ingest/rewards"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        pool_min_size=1,
        pool_max_size=5,
        log_level="warning",
        serve_rate_limit=0,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    application = create_app(settings)
    async with application.lifespan():
        yield application


@pytest.fixture
async def http(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://levered.test") as client:
        yield client


def buffer_of(app: Litestar) -> ExposureBuffer:
    buffer: ExposureBuffer = app.state.serving.buffer
    return buffer


async def hold(buffer: ExposureBuffer) -> None:
    """Keep served exposures in the buffer until the test flushes it."""
    buffer.interval = 3600.0
    buffer.max_events = 10**9
    await asyncio.sleep(0.15)  # let the writer's current 50 ms wait end


async def create(http: httpx.AsyncClient, conn: asyncpg.Connection, org: Org) -> str:
    metric = await insert_metric(conn, org)
    response = await http.post(API, json=definition(metric), headers=org.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def serve(http: httpx.AsyncClient, opt: str, user: str) -> dict[str, Any]:
    response = await http.post(
        f"{API}/{opt}/serve", json={"anonymous_id": user, "context": {"country": "DE"}}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ingest(http: httpx.AsyncClient, org: Org, events: list[dict[str, Any]]) -> Any:
    response = await http.post(EXPOSURES, json={"events": events}, headers=org.headers)
    assert response.status_code in (200, 207), response.text
    return response.json()


async def stored(conn: asyncpg.Connection, opt: str | UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        'SELECT anonymous_id, variant_number, decision_id, propensity, "timestamp" '
        "FROM warehouse.exposures WHERE optimization_id = $1 ORDER BY received_at, anonymous_id",
        UUID(str(opt)),
    )


async def flushed(app: Litestar, conn: asyncpg.Connection, opt: str) -> list[asyncpg.Record]:
    """The optimization's rows once the buffer has nothing left to write."""
    assert await buffer_of(app).flush()
    return await stored(conn, opt)


def event(opt: str, user: str, variant: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "anonymous_id": user,
        "optimization_id": opt,
        "variant": variant,
        "context": {"country": "DE"},
        **fields,
    }


def another(variant_number: int) -> dict[str, Any]:
    """A variant other than ``variant_number``'s."""
    return dict(SPACE.variant(variant_number % SPACE.size + 1))


@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
@pytest.mark.parametrize("with_time", [True, False], ids=["timestamp", "no-timestamp"])
async def test_an_ingested_exposure_of_a_served_decision_is_a_duplicate(
    app: Litestar,
    http: httpx.AsyncClient,
    conn: asyncpg.Connection,
    org: Org,
    with_key: bool,
    with_time: bool,
) -> None:
    opt = await create(http, conn, org)
    body = await serve(http, opt, "user-1")
    [served] = await flushed(app, conn, opt)
    fields: dict[str, Any] = {}
    if with_key:
        fields["idempotency_key"] = "exposure-of-user-1"
    if with_time:  # the SDK's clock, a little after the serve
        fields["timestamp"] = (served["timestamp"] + timedelta(seconds=3)).isoformat()
    twin = event(opt, "user-1", body["variant"], **fields)

    result = await ingest(http, org, [twin])
    assert (result["accepted"], result["duplicates"], result["rejected"]) == (0, 1, [])
    result = await ingest(http, org, [twin])  # a retry is still the same exposure
    assert (result["accepted"], result["duplicates"]) == (0, 1)
    [row] = await stored(conn, opt)
    assert row["decision_id"] == UUID(body["decision_id"])
    assert row["propensity"] == pytest.approx(body["propensity"])


async def test_a_served_flush_removes_the_twin_ingested_before_it(
    app: Litestar, http: httpx.AsyncClient, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(http, conn, org)
    await serve(http, opt, "warm-up")  # the optimization has served exposures already
    await flushed(app, conn, opt)
    await hold(buffer_of(app))
    body = await serve(http, opt, "user-2")
    assert buffer_of(app).pending == 1
    number, variant = body["variant_number"], body["variant"]
    now = datetime.now(UTC)
    result = await ingest(
        http,
        org,
        [
            event(opt, "user-2", variant),  # the twin, timed by the server
            event(opt, "user-2", variant, idempotency_key="k", timestamp=now.isoformat()),
            event(opt, "user-2", another(number)),  # another variant: its own exposure
            event(opt, "user-2", variant, timestamp=(now - timedelta(seconds=90)).isoformat()),
            event(opt, "someone-else", variant),
        ],
    )
    assert (result["accepted"], result["duplicates"]) == (5, 0)  # no served twin stored yet

    rows = await flushed(app, conn, opt)
    mine = [r for r in rows if r["anonymous_id"] == "user-2"]
    assert len(mine) == 3
    [served] = [r for r in mine if r["decision_id"] is not None]
    assert served["decision_id"] == UUID(body["decision_id"])
    assert sorted(r["variant_number"] for r in mine if r["decision_id"] is None) == sorted(
        [SPACE.number(another(number)), number]
    )
    assert [r["anonymous_id"] for r in rows].count("someone-else") == 1


async def test_a_first_flush_removes_the_twin_too(
    app: Litestar, http: httpx.AsyncClient, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(http, conn, org)
    await hold(buffer_of(app))
    body = await serve(http, opt, "first")
    result = await ingest(http, org, [event(opt, "first", body["variant"])])
    assert result["accepted"] == 1
    [row] = await flushed(app, conn, opt)
    assert row["decision_id"] == UUID(body["decision_id"])


async def test_exposures_that_are_not_twins_are_stored(
    app: Litestar, http: httpx.AsyncClient, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    opt = await create(http, conn, org)
    body = await serve(http, opt, "u")
    [served] = await flushed(app, conn, opt)
    number, variant, at = body["variant_number"], body["variant"], served["timestamp"]

    def at_offset(seconds: float) -> str:
        return (at + timedelta(seconds=seconds)).isoformat()

    result = await ingest(
        http,
        org,
        [
            event(opt, "u", variant, timestamp=at_offset(61)),  # outside the 60 s
            event(opt, "u", variant, timestamp=at_offset(-61)),
            event(opt, "u", another(number), timestamp=at_offset(0)),  # another variant
            event(opt, "x", variant, timestamp=at_offset(0)),  # another user
            event(opt, "u", variant, timestamp=at_offset(59)),  # the twin
        ],
    )
    assert (result["accepted"], result["duplicates"]) == (4, 1)
    assert len(await stored(conn, opt)) == 5

    # Another organization, its own served optimization, the same user id and variant at the
    # same time: its event is stored (one organization's serves never suppress another's).
    theirs = await create(http, conn, other_org)
    await serve(http, theirs, "someone")
    await flushed(app, conn, theirs)
    result = await ingest(http, other_org, [event(theirs, "u", variant, timestamp=at_offset(0))])
    assert (result["accepted"], result["duplicates"]) == (1, 0)

    # …and its ingested exposure of a user id that this organization serves later survives
    # that serve's flush.
    await hold(buffer_of(app))
    mine = await serve(http, opt, "w")
    result = await ingest(http, other_org, [event(theirs, "w", mine["variant"])])
    assert result["accepted"] == 1
    await flushed(app, conn, opt)
    assert [r["anonymous_id"] for r in await stored(conn, theirs)].count("w") == 1
    assert [r["anonymous_id"] for r in await stored(conn, opt)].count("w") == 1


async def test_a_batch_waits_for_a_flush_in_progress_and_then_sees_its_rows(
    app: Litestar, http: httpx.AsyncClient, conn: asyncpg.Connection, org: Org, db_url: str
) -> None:
    opt = await create(http, conn, org)
    await serve(http, opt, "warm-up")
    await flushed(app, conn, opt)
    variant = SPACE.variant(3)
    row = (org.id, UUID(opt), "racer", variant, 3, {}, datetime.now(UTC), 0.1, uuid4(), None, False)
    flusher = await connect(db_url)
    try:
        flush = flusher.transaction()
        await flush.start()
        await serving_db.copy_exposures(flusher, [row])  # written, not committed yet
        batch = asyncio.create_task(ingest(http, org, [event(opt, "racer", variant)]))
        await asyncio.sleep(0.3)
        assert not batch.done()  # it waits for the flush's twin lock
        await flush.commit()
        result = await asyncio.wait_for(batch, 5)
    finally:
        await flusher.close()
    assert (result["accepted"], result["duplicates"]) == (0, 1)
    assert [r["anonymous_id"] for r in await stored(conn, opt)].count("racer") == 1


async def test_attribution_sees_one_exposure_per_serve(
    http: httpx.AsyncClient, conn: asyncpg.Connection, org: Org
) -> None:
    """An app that serves *and* calls track_exposure: the rates are the served ones, not halved
    (before the fix every converting user was one 0 and one 1)."""
    opt = await make_optimization(conn, org, holdout_percentage=0)
    start = datetime.now(UTC) - timedelta(days=2)
    served: list[serving_db.ExposureRow] = []
    sdk: list[dict[str, Any]] = []
    rewards: list[dict[str, Any]] = []
    for i in range(60):
        number = 1 + i % 3
        variant = {"headline": "abc"[number - 1]}
        at = start + timedelta(minutes=10 * i)
        served.append(
            (
                org.id,
                opt,
                f"u{i}",
                variant,
                number,
                {"country": "DE"},
                at,
                1 / 3,
                uuid4(),
                None,
                False,
            )
        )
        sdk.append(
            event(str(opt), f"u{i}", variant, timestamp=(at + timedelta(seconds=2)).isoformat())
        )
        if i % 2 == 0:  # every other user buys, 5 minutes later
            rewards.append(
                {
                    "anonymous_id": f"u{i}",
                    "name": "purchase",
                    "timestamp": (at + timedelta(minutes=5)).isoformat(),
                }
            )
    # Half the SDK exposures arrive before their serve's flush, half after.
    first = await ingest(http, org, sdk[:30])
    await serving_db.copy_exposures(conn, served)
    later = await ingest(http, org, sdk[30:])
    response = await http.post(REWARDS, json={"events": rewards}, headers=org.headers)
    assert response.status_code == 200, response.text

    response = await http.get(f"{API}/{opt}/results", headers=org.headers)
    assert response.status_code == 200, response.text
    variants = {v["number"]: v for v in response.json()["variants"]}
    assert {n: (v["exposures"], v["conversions"], v["rate"]) for n, v in variants.items()} == {
        n: (20, 10, pytest.approx(0.5)) for n in (1, 2, 3)
    }
    assert (first["accepted"], later["accepted"], later["duplicates"]) == (30, 0, 30)
