"""Property-based ingestion: whatever junk arrives, the server answers 200/207/400 with an
honest count, names each problem by path, stores exactly what it says it accepted, and never
fails with a 5xx. Runs against a real server process (hypothesis drives a sync client)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levered.db.pool import connect
from tests.conftest import Org, make_org

pytestmark = pytest.mark.slow

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
NOW = datetime.now(UTC)
TIMESTAMPS = st.one_of(
    st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1)).map(
        lambda d: d.isoformat()
    ),  # naive: must be rejected
    st.just((NOW + timedelta(hours=25)).isoformat()),  # too far ahead
    st.text(max_size=30),
    JSON_LEAF,
)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(msgspec.UNSET), strategy)


REWARD = st.fixed_dictionaries(
    {},
    optional={
        "anonymous_id": st.one_of(st.text(max_size=600), JSON_LEAF),
        "name": st.one_of(
            st.sampled_from(["signup", "purchase"]), st.text(max_size=300), JSON_LEAF
        ),
        "value": st.one_of(st.floats(), st.integers(-(10**40), 10**40), JSON),
        "timestamp": TIMESTAMPS,
        "properties": JSON,
        "idempotency_key": st.one_of(st.text(min_size=0, max_size=300), JSON_LEAF),
        "optimization_id": st.one_of(st.none(), st.uuids().map(str), st.text(max_size=10)),
        "unexpected": JSON,
    },
)
VALID_REWARD = st.builds(
    lambda aid, value: {"anonymous_id": aid, "name": "signup", "value": value},
    st.text(min_size=1, max_size=50).filter(lambda s: "\x00" not in s),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
BATCH = st.lists(st.one_of(REWARD, VALID_REWARD, JSON), min_size=1, max_size=20)


@pytest.fixture(scope="module")
def tenant(server_url: str, migrated_url: str) -> Org:
    async def create() -> Org:
        conn = await connect(migrated_url)
        try:
            return await make_org(conn, f"Prop {uuid.uuid4().hex[:8]}")
        finally:
            await conn.close()

    return anyio.run(create)


def stored(url: str, org: Org) -> int:
    async def count() -> int:
        conn = await connect(url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM warehouse.rewards WHERE organization_id = $1", org.id
                )
            )
        finally:
            await conn.close()

    return anyio.run(count)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=BATCH)
def test_any_batch_gets_an_honest_answer(
    server_url: str, migrated_url: str, tenant: Org, events: list[Any]
) -> None:
    before = stored(migrated_url, tenant)
    response = httpx.post(
        f"{server_url}/api/v2/ingest/rewards",
        headers=tenant.headers,
        content=msgspec.json.encode({"events": events}),
        timeout=30,
    )
    assert response.status_code in (200, 207, 400, 403), response.text
    body = response.json()
    after = stored(migrated_url, tenant)
    if response.status_code in (200, 207):
        rejected = body["rejected"]
        assert body["accepted"] + body["duplicates"] + len(rejected) == len(events)
        assert len({r["index"] for r in rejected}) == len(rejected)
        assert all(0 <= r["index"] < len(events) and r["message"] for r in rejected)
        assert (response.status_code == 207) == bool(rejected)
        assert after - before == body["accepted"]
    else:
        assert after == before  # 400 / 403: nothing stored
        assert body["error"]["message"]
        if response.status_code == 400:
            assert all(d["path"].startswith("$") for d in body["error"]["details"])
