"""A connected PostgreSQL warehouse: a second, real PostgreSQL cluster plays the customer's.

The customer's database ``shop`` has schema ``analytics`` with ``purchases`` (the rewards) and
three accounts: ``reader`` (USAGE + SELECT: what we ask for), ``writer`` (may also write: taken,
with a warning) and ``stranger`` (no grants: refused).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db.sandbox import Limits
from levered.server.app import create_app
from levered.services import cells, reward_source, scheduler, training
from levered.services.secret_box import SecretBox
from levered.services.warehouse import Warehouse
from levered.settings import Settings
from tests.conftest import Org
from tests.customer import READER_PASSWORD, credentials
from tests.warehouse_traffic import (
    SAME_COUNTS,
    URL,
    api_fixture,
    assert_guardrails_agree,
    attribution_target,
    cells_of,
    check_purchases_catalog,
    connect_postgres,
    connect_postgres_with_metric,
    move_rewards,
    post_revenue,
    postgres_body,
    revenue_preview,
    same_traffic,
    traffic,
    warehouse_fixture,
)

pytestmark = pytest.mark.anyio

SECRET = "connected-test-secret"

api = api_fixture(SECRET, pool_min_size=1, pool_max_size=5)
wh = warehouse_fixture(SECRET)


# -- connecting -------------------------------------------------------------------------------


async def test_connect_tests_stores_encrypted_and_never_returns_the_password(
    api: AsyncTestClient[Any], org: Org, customer: str, conn: asyncpg.Connection
) -> None:
    response = await api.put(URL, json=postgres_body(customer), headers=org.headers)
    assert response.status_code == 200, response.text
    assert READER_PASSWORD not in response.text
    body = response.json()
    assert (body["provider"], body["healthy"], body["dataset_id"]) == (
        "postgres",
        True,
        "analytics",
    )
    assert body["connection"]["username"] == "reader"
    assert body["connection"]["password_set"] is True
    assert "password" not in body["connection"]
    assert body["warnings"] == []
    assert [t["name"] for t in body["tables"]] == [
        "app_exposures",
        "app_exposures_plain",
        "big_orders",
        "purchases",
    ]
    assert {t["name"]: t["description"] for t in body["tables"]}["purchases"] == "One row per order"

    status = await api.get(URL, headers=org.headers)
    assert status.status_code == 200 and READER_PASSWORD not in status.text
    stored = await conn.fetchrow(
        "SELECT settings, secret FROM warehouse_connections WHERE organization_id = $1", org.id
    )
    assert stored is not None
    assert READER_PASSWORD.encode() not in bytes(stored["secret"])
    assert "password" not in stored["settings"]
    assert SecretBox(SECRET).open(stored["secret"]) == READER_PASSWORD
    assert (
        await conn.fetchval("SELECT warehouse_provider FROM organizations WHERE id = $1", org.id)
        == "postgres"
    )


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"credentials": "wrong password"}, "$.credentials", "could not log in"),
        ({"dataset_id": "nowhere"}, "$.dataset_id", "no schema 'nowhere'"),
        ({"credentials": "stranger"}, "$.dataset_id", "cannot read schema"),
        ({"credentials": "unknown field"}, "$.credentials.colour", "unknown field"),
        ({"credentials": "no port open"}, "$.credentials", "could not reach the server"),
        ({"dataset_id": None}, "$.dataset_id", "required"),
    ],
)
async def test_a_failed_connection_test_is_a_400_and_stores_nothing(
    api: AsyncTestClient[Any],
    org: Org,
    customer: str,
    conn: asyncpg.Connection,
    change: dict[str, Any],
    path: str,
    words: str,
) -> None:
    body = postgres_body(customer)
    if "dataset_id" in change:
        body["dataset_id"] = change["dataset_id"]
    what = change.get("credentials")
    if what == "wrong password":
        body["credentials"]["password"] = "nope"
    elif what == "stranger":
        body["credentials"] = credentials(customer, "stranger", "stranger-pw")
    elif what == "unknown field":
        body["credentials"]["colour"] = "red"
    elif what == "no port open":
        body["credentials"]["port"] = 1
    response = await api.put(URL, json=body, headers=org.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["details"][0]["path"] == path
    assert words in error["message"]
    assert await conn.fetchval("SELECT count(*) FROM warehouse_connections") == 0
    assert (
        await conn.fetchval("SELECT warehouse_provider FROM organizations WHERE id = $1", org.id)
        == "managed"
    )


async def test_an_account_that_can_write_is_taken_with_warnings(
    api: AsyncTestClient[Any], org: Org, customer: str
) -> None:
    body = postgres_body(customer, credentials=credentials(customer, "writer", "writer-pw"))
    response = await api.put(URL, json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    warnings = response.json()["warnings"]
    assert any("can write to 1 table(s) (purchases)" in w for w in warnings), warnings
    assert any("can create objects" in w for w in warnings), warnings


async def test_levered_own_database_is_refused(
    api: AsyncTestClient[Any], org: Org, db_url: str
) -> None:
    """With the app's own credentials (the worst case), the connection is still refused:
    through it an organization could read every other one's rows."""
    parsed = urlparse(db_url)
    body = {
        "provider": "postgres",
        "dataset_id": "warehouse",
        "credentials": {
            "host": parsed.hostname,
            "port": parsed.port,
            "database": parsed.path.lstrip("/"),
            "username": parsed.username,
            "password": parsed.password,
            "sslmode": "disable",
        },
    }
    response = await api.put(URL, json=body, headers=org.headers)
    assert response.status_code == 400, response.text
    assert "Levered's own database" in response.json()["error"]["message"]


# -- reading ----------------------------------------------------------------------------------


async def test_queries_run_on_the_connected_warehouse_read_only(
    api: AsyncTestClient[Any],
    org: Org,
    other_org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    await shop.execute(
        "INSERT INTO analytics.purchases VALUES ('u1', now(), 120, false), ('u2', now(), 5, true)"
    )
    await connect_postgres(api, org, customer)
    q = await api.post(
        f"{URL}/query",
        json={"sql": "SELECT user_id, amount FROM purchases ORDER BY user_id"},
        headers=org.headers,
    )
    assert q.status_code == 200, q.text
    assert q.json()["rows"] == [["u1", 120], ["u2", 5]]

    await check_purchases_catalog(api, org)
    missing = await api.get(f"{URL}/tables/secret_things/columns", headers=org.headers)
    assert missing.status_code == 404

    write = await api.post(
        f"{URL}/query",
        json={"sql": "INSERT INTO purchases VALUES ('x', now(), 1, false) RETURNING 1"},
        headers=org.headers,
    )
    assert write.status_code == 400, write.text
    assert await shop.fetchval("SELECT count(*) FROM analytics.purchases") == 2

    # Levered's own tables are not in the customer's database, and another organization's
    # queries still run on the managed warehouse, which has no ``purchases``.
    ours = await api.post(
        f"{URL}/query", json={"sql": "SELECT count(*) FROM exposures"}, headers=org.headers
    )
    assert ours.status_code == 400 and "does not exist" in ours.json()["error"]["message"]
    theirs = await api.post(
        f"{URL}/query", json={"sql": "SELECT count(*) FROM purchases"}, headers=other_org.headers
    )
    assert theirs.status_code == 400 and "does not exist" in theirs.json()["error"]["message"]
    status = (await api.get(URL, headers=other_org.headers)).json()
    assert status["provider"] == "managed" and status["connection"] is None


async def test_metrics_dry_run_and_preview_on_the_connected_warehouse(
    api: AsyncTestClient[Any], org: Org, customer: str, shop: asyncpg.Connection
) -> None:
    await shop.execute("INSERT INTO analytics.purchases VALUES ('u1', now(), 12.5, false)")
    await connect_postgres(api, org, customer)
    bad = await post_revenue(api, org, timestamp_col="when")
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["path"] == "$.timestamp_col"
    assert await revenue_preview(api, org) == [("u1", 12.5)]


async def test_rewards_cannot_be_ingested_with_a_connected_warehouse(
    api: AsyncTestClient[Any], org: Org, customer: str
) -> None:
    await connect_postgres(api, org, customer)
    event = {
        "anonymous_id": "u1",
        "name": "purchase",
        "value": 1,
        "timestamp": datetime.now(UTC).isoformat(),
        "idempotency_key": "k1",
    }
    response = await api.post(
        "/api/v2/ingest/rewards", json={"events": [event]}, headers=org.headers
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "warehouse_not_managed"


# -- training ---------------------------------------------------------------------------------


async def test_training_joins_levered_exposures_with_the_warehouse_rewards(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    """The same traffic, rewards in Levered (other_org) or in the customer's database (org):
    the cells and the model are the same."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)
    managed, opt = await same_traffic(conn, other_org, org, users=600, seed=7, start=start)
    moved = await move_rewards(conn, org, shop)
    assert moved > 30
    await connect_postgres_with_metric(api, conn, org, customer)

    version_managed = await training.train(wh, other_org.id, managed, seed=3)
    version = await training.train(wh, org.id, opt, seed=3)
    assert await cells_of(conn, opt) == await cells_of(conn, managed)
    assert sum(c[5] for c in await cells_of(conn, opt)) == moved
    same = {k: v for k, v in version.counts.items() if k in SAME_COUNTS}
    assert same == {k: v for k, v in version_managed.counts.items() if k in SAME_COUNTS}
    assert len(same) == len(SAME_COUNTS)

    # The observations listing and a training as of a past time (attribution from scratch)
    # read the warehouse's rewards the same way.
    def page(body: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(o["anonymous_id"], o["converted"], o["reward"]) for o in body["observations"]]

    for number in (1, 3):
        query = f"observations?size=100&page={number}"
        ours = await api.get(f"/api/v2/optimizations/{opt}/{query}", headers=org.headers)
        theirs = await api.get(
            f"/api/v2/optimizations/{managed}/{query}", headers=other_org.headers
        )
        assert ours.status_code == 200, ours.text
        assert page(ours.json()) == page(theirs.json())
        assert any(converted for _, converted, _ in page(ours.json()))
    past = start + timedelta(hours=3)  # two hours of exposures matured by then
    old = await training.train(wh, org.id, opt, seed=3, as_of=past)
    old_managed = await training.train(wh, other_org.id, managed, seed=3, as_of=past)
    assert old.counts["reward_sum"] == old_managed.counts["reward_sum"] > 0
    assert old.counts["matured"] == old_managed.counts["matured"] < 600

    # Late rewards land in the warehouse for two unrewarded users: the newest one's exposure is
    # inside the reload buffer (6 h before the frontier), so the next pass counts it (not the
    # refunded duplicate: the metric's own SQL excludes it); the oldest one's is before the
    # buffer, so only a rebuild counts it (the documented bound).
    unrewarded = await conn.fetch(
        "SELECT anonymous_id, timestamp FROM warehouse.exposures WHERE optimization_id = $1 "
        "ORDER BY timestamp",
        opt,
    )
    rewarded = {r[0] for r in await shop.fetch("SELECT user_id FROM analytics.purchases")}
    unrewarded = [r for r in unrewarded if r["anonymous_id"] not in rewarded]
    oldest, newest = unrewarded[0], unrewarded[-1]
    frontier = await conn.fetchval(
        "SELECT frontier FROM observation_state WHERE optimization_id = $1", opt
    )
    assert newest["timestamp"] > frontier - reward_source.RELOAD
    assert oldest["timestamp"] < frontier - reward_source.RELOAD - timedelta(hours=1)
    for user in (newest, oldest):
        await shop.execute(
            "INSERT INTO analytics.purchases VALUES ($1, $2, 1, false), ($1, $2, 1, true)",
            user["anonymous_id"],
            user["timestamp"] + timedelta(minutes=1),
        )
    target = await attribution_target(conn, org, opt)
    done = await cells.extend(wh, org.id, *target)
    assert done is not None and not done.rebuilt
    assert sum(c[5] for c in await cells_of(conn, opt)) == moved + 1
    done = await cells.extend(wh, org.id, *target, rebuild=True)
    assert done is not None and done.rebuilt
    assert sum(c[5] for c in await cells_of(conn, opt)) == moved + 2


async def test_an_unreachable_warehouse_fails_training_clearly_and_serving_goes_on(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    opt = await traffic(conn, org, users=200, seed=2)
    await move_rewards(conn, org, shop)
    await connect_postgres_with_metric(api, conn, org, customer)
    first = await training.train(wh, org.id, opt, seed=1)
    await conn.execute(
        "UPDATE warehouse_connections SET settings = settings || '{\"port\": 1}'::jsonb "
        "WHERE organization_id = $1",
        org.id,
    )
    model_id = await conn.fetchval("SELECT id FROM models WHERE optimization_id = $1", opt)
    response = await api.post(f"/api/v2/models/{model_id}/train", headers=org.headers)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "warehouse_unavailable"
    assert "cannot be reached" in response.json()["error"]["message"]
    status = (await api.get(URL, headers=org.headers)).json()
    assert status["healthy"] is False and "cannot be reached" in status["error"]
    # The version trained before is still the one served.
    served = await api.post(f"/api/v2/optimizations/{opt}/serve", json={"anonymous_id": "new-user"})
    assert served.status_code == 200, served.text
    assert served.json()["model_version"] == first.version


async def test_another_organization_cannot_reach_the_connection_or_its_secret(
    api: AsyncTestClient[Any], org: Org, other_org: Org, customer: str
) -> None:
    """From the attacker's side: the control-plane table is not readable by tenant SQL, and
    the attacker's warehouse endpoints stay on its own (managed) warehouse."""
    await connect_postgres(api, org, customer)
    for sql in (
        "SELECT * FROM public.warehouse_connections",
        "SELECT secret FROM warehouse_connections",
    ):
        stolen = await api.post(f"{URL}/query", json={"sql": sql}, headers=other_org.headers)
        assert stolen.status_code == 400, stolen.text
        assert READER_PASSWORD not in stolen.text
    tables = await api.get(f"{URL}/tables", headers=other_org.headers)
    assert [t["name"] for t in tables.json()["tables"]] == ["exposures", "rewards"]


async def test_a_changed_secret_key_is_reported_not_a_crash(
    api: AsyncTestClient[Any], org: Org, customer: str, db_url: str
) -> None:
    await connect_postgres(api, org, customer)
    settings = Settings(database_url=db_url, log_level="warning", secret_key="another-key")
    async with AsyncTestClient(create_app(settings)) as other_server:
        status = await other_server.get(URL, headers=org.headers)
        assert status.status_code == 200, status.text
        assert status.json()["healthy"] is False
        assert "cannot be decrypted" in status.json()["error"]
        query = await other_server.post(
            f"{URL}/query", json={"sql": "SELECT 1"}, headers=org.headers
        )
        assert query.status_code == 409
        assert query.json()["error"]["code"] == "warehouse_secret_unreadable"


async def test_connected_queries_keep_the_timeout_and_row_limit(
    api: AsyncTestClient[Any], org: Org, customer: str, shop: asyncpg.Connection
) -> None:
    await shop.execute(
        "INSERT INTO analytics.purchases SELECT 'u' || i, now(), i, false "
        "FROM generate_series(1, 50) AS i"
    )
    await connect_postgres(api, org, customer)
    api.app.state.sandbox_limits = Limits(timeout_s=0.5)
    slow = await api.post(
        f"{URL}/query", json={"sql": "SELECT pg_sleep(3), 1"}, headers=org.headers
    )
    assert slow.status_code == 400, slow.text
    assert "timeout" in slow.json()["error"]["message"]
    capped = await api.post(
        f"{URL}/query", json={"sql": "SELECT * FROM purchases", "limit": 7}, headers=org.headers
    )
    assert capped.status_code == 200, capped.text
    assert (capped.json()["row_count"], capped.json()["truncated"]) == (7, True)


async def test_the_scheduler_polls_a_connected_warehouse_hourly(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    """No arrival times to read in the customer's database: with nothing new in Levered's
    store, a connected optimization is due again once its version is an hour old."""
    opt = await traffic(conn, org, users=100, seed=4)
    await move_rewards(conn, org, shop)
    await connect_postgres_with_metric(api, conn, org, customer)
    await training.train(wh, org.id, opt, seed=1)
    assert (org.id, opt) not in await scheduler.due(wh)
    await conn.execute(
        "UPDATE model_versions SET window_end = window_end - $2::interval "
        "WHERE model_id = (SELECT id FROM models WHERE optimization_id = $1)",
        opt,
        reward_source.RELOAD_POLL,
    )
    assert (org.id, opt) in await scheduler.due(wh)


async def test_guardrails_read_the_connected_warehouse_like_the_managed_one(
    api: AsyncTestClient[Any],
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    """The purchases metric as a guardrail: the same traffic with its rewards in the
    customer's database or in Levered's gives the same evaluation."""
    managed, opt = await same_traffic(conn, other_org, org, users=400, seed=9)
    await move_rewards(conn, org, shop)
    await connect_postgres_with_metric(api, conn, org, customer)
    await assert_guardrails_agree(api, conn, (org, opt), (other_org, managed), users=400)
