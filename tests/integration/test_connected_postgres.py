"""A connected PostgreSQL warehouse: a second, real PostgreSQL cluster plays the customer's.

The customer's database ``shop`` has schema ``analytics`` with ``purchases`` (the rewards) and
three accounts: ``reader`` (USAGE + SELECT: what we ask for), ``writer`` (may also write: taken,
with a warning) and ``stranger`` (no grants: refused).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db.pool import create_pool
from levered.db.sandbox import Limits
from levered.server.app import create_app
from levered.services import cells, reward_source, scheduler, training
from levered.services.secret_box import SecretBox
from levered.services.warehouse import Warehouse
from levered.settings import Settings
from tests.conftest import Org
from tests.customer import PURCHASES_SQL, READER_PASSWORD, credentials
from tests.integration.test_training import make_optimization, simulate

pytestmark = pytest.mark.anyio

URL = "/api/v2/warehouse"
SECRET = "connected-test-secret"


@pytest.fixture
async def shop(customer: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the customer's database, its purchases emptied."""
    conn = await asyncpg.connect(customer)
    await conn.execute("TRUNCATE analytics.purchases")
    try:
        yield conn
    finally:
        await conn.close()


def connect_body(customer: str, **overrides: Any) -> dict[str, Any]:
    return {
        "provider": "postgres",
        "dataset_id": "analytics",
        "credentials": credentials(customer),
        **overrides,
    }


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = Settings(
        database_url=db_url,
        pool_min_size=1,
        pool_max_size=5,
        log_level="warning",
        secret_key=SECRET,
        scheduler=False,
    )
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def connect(api: AsyncTestClient[Any], org: Org, customer: str) -> dict[str, Any]:
    response = await api.put(URL, json=connect_body(customer), headers=org.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- connecting -------------------------------------------------------------------------------


async def test_connect_tests_stores_encrypted_and_never_returns_the_password(
    api: AsyncTestClient[Any], org: Org, customer: str, conn: asyncpg.Connection
) -> None:
    response = await api.put(URL, json=connect_body(customer), headers=org.headers)
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
    assert [t["name"] for t in body["tables"]] == ["big_orders", "purchases"]
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
    body = connect_body(customer)
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
    body = connect_body(customer, credentials=credentials(customer, "writer", "writer-pw"))
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
    await connect(api, org, customer)
    q = await api.post(
        f"{URL}/query",
        json={"sql": "SELECT user_id, amount FROM purchases ORDER BY user_id"},
        headers=org.headers,
    )
    assert q.status_code == 200, q.text
    assert q.json()["rows"] == [["u1", 120], ["u2", 5]]

    columns = await api.get(f"{URL}/tables/purchases/columns", headers=org.headers)
    assert [c["name"] for c in columns.json()["columns"]] == ["user_id", "ts", "amount", "refunded"]
    preview = await api.get(f"{URL}/tables/big_orders/preview?n=5", headers=org.headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["rows"][0][0] == "u1"
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
    await connect(api, org, customer)
    metric = {
        "name": "Revenue",
        "sql": PURCHASES_SQL,
        "anonymous_id_col": "user_id",
        "timestamp_col": "ts",
        "value_col": "amount",
        "reward_type": "numeric",
    }
    bad = await api.post(
        "/api/v2/metrics", json={**metric, "timestamp_col": "when"}, headers=org.headers
    )
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["path"] == "$.timestamp_col"
    created = await api.post("/api/v2/metrics", json=metric, headers=org.headers)
    assert created.status_code in (200, 201), created.text
    metric_id = created.json()["id"]
    preview = await api.get(f"/api/v2/metrics/{metric_id}/preview", headers=org.headers)
    assert preview.status_code == 200, preview.text
    rows = preview.json()["rows"]
    assert [(r["anonymous_id"], r["value"]) for r in rows] == [("u1", 12.5)]


async def test_rewards_cannot_be_ingested_with_a_connected_warehouse(
    api: AsyncTestClient[Any], org: Org, customer: str
) -> None:
    await connect(api, org, customer)
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


@pytest.fixture
async def wh(db_url: str) -> AsyncIterator[Warehouse]:
    pool = await create_pool(db_url, min_size=1, max_size=6)
    try:
        yield Warehouse(pool, secrets=lambda: SecretBox(SECRET))
    finally:
        await pool.close()


async def connect_with_metric(
    api: AsyncTestClient[Any], conn: asyncpg.Connection, org: Org, customer: str
) -> None:
    """The organization's metric rewritten over the customer's ``purchases``, and connected."""
    await conn.execute(
        "UPDATE metrics SET sql = $2, anonymous_id_col = 'user_id', timestamp_col = 'ts', "
        "value_col = 'amount' WHERE organization_id = $1",
        org.id,
        PURCHASES_SQL,
    )
    await connect(api, org, customer)


async def move_rewards(conn: asyncpg.Connection, org: Org, shop: asyncpg.Connection) -> int:
    """The organization's simulated rewards, moved from the managed store to the customer's."""
    rows = await conn.fetch(
        "DELETE FROM warehouse.rewards WHERE organization_id = $1 "
        "RETURNING anonymous_id, timestamp, value",
        org.id,
    )
    await shop.executemany(
        "INSERT INTO analytics.purchases VALUES ($1, $2, $3, false)",
        [(r["anonymous_id"], r["timestamp"], r["value"]) for r in rows],
    )
    return len(rows)


SAME_COUNTS = {
    "matured",
    "cells",
    "reward_sum",
    "holdout_exposures",
    "optimized_users",
    "holdout_users",
    "exposures",
}
CELL_COLUMNS = "bucket, variant_number, holdout, context, exposures, reward_sum, reward_sumsq"


async def cells_of(conn: asyncpg.Connection, optimization_id: UUID) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        f"SELECT {CELL_COLUMNS} FROM observation_cells WHERE optimization_id = $1 "
        "ORDER BY bucket, variant_number, holdout, context::text",
        optimization_id,
    )
    return [tuple(r) for r in rows]


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
    managed = await make_optimization(conn, other_org)
    await simulate(conn, other_org, managed, users=600, seed=7, start=start)
    opt = await make_optimization(conn, org)
    await simulate(conn, org, opt, users=600, seed=7, start=start)
    moved = await move_rewards(conn, org, shop)
    assert moved > 30
    await connect_with_metric(api, conn, org, customer)

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
    target = await _target(conn, org, opt)
    done = await cells.extend(wh, org.id, *target)
    assert done is not None and not done.rebuilt
    assert sum(c[5] for c in await cells_of(conn, opt)) == moved + 1
    done = await cells.extend(wh, org.id, *target, rebuild=True)
    assert done is not None and done.rebuilt
    assert sum(c[5] for c in await cells_of(conn, opt)) == moved + 2


async def _target(conn: asyncpg.Connection, org: Org, opt: UUID) -> tuple[Any, Any]:
    from levered.db.attribution import find_target

    found = await find_target(conn, org.id, opt)
    assert found is not None and found[1] is not None
    return found[0], found[1]


async def test_an_unreachable_warehouse_fails_training_clearly_and_serving_goes_on(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    opt = await make_optimization(conn, org)
    await simulate(conn, org, opt, users=200, seed=2)
    await move_rewards(conn, org, shop)
    await connect_with_metric(api, conn, org, customer)
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
    await connect(api, org, customer)
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
    await connect(api, org, customer)
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
    await connect(api, org, customer)
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
    opt = await make_optimization(conn, org)
    await simulate(conn, org, opt, users=100, seed=4)
    await move_rewards(conn, org, shop)
    await connect_with_metric(api, conn, org, customer)
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
    managed = await make_optimization(conn, other_org)
    await simulate(conn, other_org, managed, users=400, seed=9)
    opt = await make_optimization(conn, org)
    await simulate(conn, org, opt, users=400, seed=9)
    await move_rewards(conn, org, shop)
    await connect_with_metric(api, conn, org, customer)
    evaluations = []
    for who, optimization_id in ((org, opt), (other_org, managed)):
        metric_id = await conn.fetchval(
            "SELECT reward_metric_id FROM optimizations WHERE id = $1", optimization_id
        )
        guardrail = {
            "metric_id": str(metric_id),
            "direction": "must_not_decrease",
            "tolerance_percent": 50,
        }
        patched = await api.patch(
            f"/api/v2/optimizations/{optimization_id}",
            json={"guardrails": [guardrail]},
            headers=who.headers,
        )
        assert patched.status_code == 200, patched.text
        shown = await api.get(
            f"/api/v2/optimizations/{optimization_id}/guardrails", headers=who.headers
        )
        assert shown.status_code == 200, shown.text
        (g,) = shown.json()["guardrails"]
        evaluations.append(
            {k: g[k] for k in ("status", "optimized_users", "holdout_users", "optimized_rate")}
        )
    assert evaluations[0] == evaluations[1]
    assert evaluations[0]["optimized_users"] + evaluations[0]["holdout_users"] == 400
    assert evaluations[0]["optimized_rate"] > 0
