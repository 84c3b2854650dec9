"""Set-up shared by the connected-warehouse integration tests, written once.

test_connected_postgres, test_connected_clickhouse, test_clickhouse_training,
test_weighted_outcomes_connected and test_clickhouse_weighted take the same steps before they
assert anything: an app and a :class:`Warehouse` under the module's own secret key, the
customer's store emptied, simulated traffic in Levered's store, its rewards moved to the
customer's ``analytics.purchases``, the metric pointed at them, the warehouse connected. They
differ in what they check, not in how the data gets there: here a step changes in one place and
cannot drift between the PostgreSQL and ClickHouse copies. So do the checks that were word for
word the same on both (catalog reads, a metric's preview, the guardrail and weighted cells).

The stores are tests/customer.py and tests/clickhouse_store.py; their emptied per-test views,
the ``shop`` and ``store`` fixtures, are in tests/conftest.py. Modules make ``api`` and ``wh``
with :func:`api_fixture` / :func:`warehouse_fixture`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db.attribution import find_target
from levered.db.connected_clickhouse import param_time
from levered.db.pool import create_pool
from levered.server.app import create_app
from levered.services import cells, training
from levered.services.secret_box import SecretBox
from levered.services.warehouse import Warehouse
from levered.settings import Settings
from tests.conftest import Org
from tests.customer import PURCHASES_SQL, credentials
from tests.integration import test_training
from tests.integration import test_weighted_outcomes as weighted

URL = "/api/v2/warehouse"
Amount = Callable[[asyncpg.Record], Any]  # what a moved reward's purchase is worth
Optimization = tuple[Org, UUID]  # an organization and one of its optimizations
Planted = dict[int, Counter[str]]  # test_weighted_outcomes' outcomes per variant


def _chdb_root(request: pytest.FixtureRequest, on_chdb: bool) -> dict[str, Any]:
    """LEVERED_CHDB_ROOT as the ``store`` fixture's parent directory, when ``on_chdb``."""
    if not on_chdb:
        return {}
    path, _ = request.getfixturevalue("store")
    return {"chdb_root": str(path.parent)}


def api_fixture(secret: str, *, on_chdb: bool = False, **settings: Any) -> Any:
    """A module's ``api`` fixture: the app on the test database under the module's ``secret``
    (what its connections are sealed with), without the scheduler (the tests train when they
    choose); ``on_chdb``: it may open the ``store`` fixture's directory. ``settings``: the
    module's other :class:`Settings` (pool sizes)."""

    @pytest.fixture(name="api")
    async def api(
        db_url: str, request: pytest.FixtureRequest
    ) -> AsyncIterator[AsyncTestClient[Any]]:
        app = create_app(
            Settings(
                database_url=db_url,
                log_level="warning",
                secret_key=secret,
                scheduler=False,
                **settings,
                **_chdb_root(request, on_chdb),
            )
        )
        async with AsyncTestClient(app) as client:
            yield client

    return api


def warehouse_fixture(secret: str, *, on_chdb: bool = False) -> Any:
    """A module's ``wh`` fixture: the :class:`Warehouse` training reads through, opening
    passwords with the module's ``secret`` (the one :func:`api_fixture` sealed them with)."""

    @pytest.fixture(name="wh")
    async def wh(db_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Warehouse]:
        root = _chdb_root(request, on_chdb)
        pool = await create_pool(db_url, min_size=1, max_size=6)
        try:
            yield Warehouse(pool, secrets=lambda: SecretBox(secret), **root)
        finally:
            await pool.close()

    return wh


async def traffic(conn: asyncpg.Connection, org: Org, **simulate: Any) -> UUID:
    """A new optimization of ``org`` (test_training's, over its purchases metric) and traffic by
    test_training.simulate(``simulate``), exposures and rewards in Levered's managed store."""
    opt = await test_training.make_optimization(conn, org)
    await test_training.simulate(conn, org, opt, **simulate)
    return opt


async def same_traffic(conn: asyncpg.Connection, *orgs: Org, **simulate: Any) -> list[UUID]:
    """:func:`traffic` with the same arguments (so the same data) for each organization, in
    order: a managed twin to compare a connected warehouse with."""
    return [await traffic(conn, who, **simulate) for who in orgs]


def reward_value(row: asyncpg.Record) -> Any:
    return row["value"]  # a moved reward's amount: its own value


async def take_rewards(conn: asyncpg.Connection, org: Org) -> list[asyncpg.Record]:
    return await conn.fetch(  # the organization's simulated rewards, out of the managed store
        "DELETE FROM warehouse.rewards WHERE organization_id = $1 "
        "RETURNING anonymous_id, timestamp, name, value",
        org.id,
    )


async def move_rewards(
    conn: asyncpg.Connection, org: Org, shop: asyncpg.Connection, amount: Amount = reward_value
) -> int:
    """The organization's simulated rewards, moved from the managed store to the customer's
    PostgreSQL (each purchase of ``amount``); how many."""
    rows = await take_rewards(conn, org)
    await shop.executemany(
        "INSERT INTO analytics.purchases VALUES ($1, $2, $3, false)",
        [(r["anonymous_id"], r["timestamp"], amount(r)) for r in rows],
    )
    return len(rows)


async def move_to_clickhouse(
    conn: asyncpg.Connection, org: Org, writer: Any, amount: Amount = reward_value
) -> int:
    """The organization's simulated rewards, moved from the managed store to the chdb one
    (each purchase of ``amount``); how many."""
    rows = await take_rewards(conn, org)
    if rows:
        values = ", ".join(
            f"('{r['anonymous_id']}', '{param_time(r['timestamp'])}', {amount(r)}, false)"
            for r in rows
        )
        writer.query(f"INSERT INTO analytics.purchases VALUES {values}")
    return len(rows)


# -- connecting -------------------------------------------------------------------------------


def postgres_body(customer: str, **overrides: Any) -> dict[str, Any]:
    """The PUT body connecting the customer's PostgreSQL as ``reader``."""
    return {
        "provider": "postgres",
        "dataset_id": "analytics",
        "credentials": credentials(customer),
        **overrides,
    }


def clickhouse_body(path: Path, **overrides: Any) -> dict[str, Any]:
    """The PUT body connecting the chdb store at ``path``."""
    return {
        "provider": "clickhouse",
        "dataset_id": "analytics",
        "credentials": {"url": f"chdb://{path}"},
        **overrides,
    }


async def connect(api: AsyncTestClient[Any], org: Org, body: dict[str, Any]) -> dict[str, Any]:
    """The warehouse connected (a 200); the status it answers."""
    response = await api.put(URL, json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def connect_postgres(api: AsyncTestClient[Any], org: Org, customer: str) -> dict[str, Any]:
    return await connect(api, org, postgres_body(customer))


async def connect_clickhouse(api: AsyncTestClient[Any], org: Org, path: Path) -> dict[str, Any]:
    return await connect(api, org, clickhouse_body(path))


async def point_metrics_at_purchases(
    conn: asyncpg.Connection, org: Org, sql: str = PURCHASES_SQL
) -> None:
    """The organization's metrics rewritten over the customer's ``purchases`` (``sql``)."""
    await conn.execute(
        "UPDATE metrics SET sql = $2, anonymous_id_col = 'user_id', timestamp_col = 'ts', "
        "value_col = 'amount' WHERE organization_id = $1",
        org.id,
        sql,
    )


async def connect_postgres_with_metric(
    api: AsyncTestClient[Any], conn: asyncpg.Connection, org: Org, customer: str
) -> None:
    """The organization's metric rewritten over the customer's ``purchases``, and connected."""
    await point_metrics_at_purchases(conn, org)
    await connect_postgres(api, org, customer)


async def connect_clickhouse_with_metric(
    api: AsyncTestClient[Any], conn: asyncpg.Connection, org: Org, path: Path, sql: str
) -> None:
    """The same over the chdb store at ``path`` (``sql``: its purchases query)."""
    await point_metrics_at_purchases(conn, org, sql)
    await connect_clickhouse(api, org, path)


# -- cells ------------------------------------------------------------------------------------

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


async def cells_of(
    conn: asyncpg.Connection, optimization_id: UUID, *, outcomes: bool = False
) -> list[tuple[Any, ...]]:
    """The optimization's stored cells, in a fixed order (with their ``outcome_counts``)."""
    columns = CELL_COLUMNS + (", outcome_counts" if outcomes else "")
    rows = await conn.fetch(
        f"SELECT {columns} FROM observation_cells WHERE optimization_id = $1 "
        "ORDER BY bucket, variant_number, holdout, context::text",
        optimization_id,
    )
    return [tuple(r) for r in rows]


async def attribution_target(conn: asyncpg.Connection, org: Org, opt: UUID) -> tuple[Any, Any]:
    """What cells.extend takes for the optimization: its metric and reward source."""
    found = await find_target(conn, org.id, opt)
    assert found is not None and found[1] is not None
    return found[0], found[1]


async def extend(
    wh: Warehouse, conn: asyncpg.Connection, org: Org, opt: UUID, **kwargs: Any
) -> cells.Pass:
    """One cells pass of the optimization (``kwargs``: :func:`levered.services.cells.extend`'s)."""
    done = await cells.extend(wh, org.id, *await attribution_target(conn, org, opt), **kwargs)
    assert done is not None
    return done


# -- checks the same on every warehouse -------------------------------------------------------


async def check_purchases_catalog(api: AsyncTestClient[Any], org: Org) -> None:
    """``purchases``' columns in order, and a preview of ``big_orders`` starting with ``u1``."""
    columns = await api.get(f"{URL}/tables/purchases/columns", headers=org.headers)
    assert [c["name"] for c in columns.json()["columns"]] == ["user_id", "ts", "amount", "refunded"]
    preview = await api.get(f"{URL}/tables/big_orders/preview?n=5", headers=org.headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["rows"][0][0] == "u1"


# PURCHASES_SQL reads alike on both warehouses (tests/clickhouse_store.py spells it the same).
REVENUE: dict[str, Any] = {
    "name": "Revenue",
    "sql": PURCHASES_SQL,
    "anonymous_id_col": "user_id",
    "timestamp_col": "ts",
    "value_col": "amount",
    "reward_type": "numeric",
}


async def post_revenue(api: AsyncTestClient[Any], org: Org, **changes: Any) -> Any:
    """The revenue metric over ``purchases`` (with ``changes``) posted; the response."""
    return await api.post("/api/v2/metrics", json={**REVENUE, **changes}, headers=org.headers)


async def revenue_preview(api: AsyncTestClient[Any], org: Org) -> list[tuple[Any, Any]]:
    """The revenue metric created, and its preview's (anonymous_id, value) rows."""
    created = await post_revenue(api, org)
    assert created.status_code in (200, 201), created.text
    preview = await api.get(f"/api/v2/metrics/{created.json()['id']}/preview", headers=org.headers)
    assert preview.status_code == 200, preview.text
    return [(r["anonymous_id"], r["value"]) for r in preview.json()["rows"]]


async def assert_guardrails_agree(
    api: AsyncTestClient[Any],
    conn: asyncpg.Connection,
    connected: Optimization,
    managed: Optimization,
    users: int,
) -> None:
    """Each optimization's reward metric as its guardrail: the connected one's evaluation is
    the managed one's, over all ``users``, with some optimized conversions."""
    evaluations = []
    for who, optimization_id in (connected, managed):
        metric_id = await conn.fetchval(
            "SELECT reward_metric_id FROM optimizations WHERE id = $1", optimization_id
        )
        g = await weighted.guard_with(api, who, optimization_id, metric_id, tolerance=50)
        evaluations.append(
            {k: g[k] for k in ("status", "optimized_users", "holdout_users", "optimized_rate")}
        )
    assert evaluations[0] == evaluations[1]
    assert evaluations[0]["optimized_users"] + evaluations[0]["holdout_users"] == users
    assert evaluations[0]["optimized_rate"] > 0


# -- weighted outcomes ------------------------------------------------------------------------

AMOUNTS = {"add_to_cart": 1, "purchase": 20, "page_view": 0.5}
# add_to_cart matched by the purchase's amount, purchase by the name the metric's SQL computes
WEIGHTED_OUTCOMES = [
    {**weighted.CART, "match": {"by": "value", "value": AMOUNTS["add_to_cart"]}},
    {**weighted.PURCHASE, "match": {"by": "name", "value": "purchase"}},
]


def weighted_amount(row: asyncpg.Record) -> Any:
    """A moved weighted reward's amount: the one its outcome's name stands for."""
    return AMOUNTS[row["name"]]


async def create_metric(api: AsyncTestClient[Any], org: Org, **body: Any) -> UUID:
    response = await api.post("/api/v2/metrics", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def checkout_metric(api: AsyncTestClient[Any], org: Org, sql: str) -> UUID:
    """The weighted metric over the customer's purchases (``sql`` computes ``kind``)."""
    return await create_metric(
        api,
        org,
        name="Checkout value",
        sql=sql,
        anonymous_id_col="user_id",
        timestamp_col="ts",
        value_col="amount",
        name_col="kind",
        outcomes=WEIGHTED_OUTCOMES,
    )


async def weighted_traffic(
    conn: asyncpg.Connection, org: Org, metric_id: UUID
) -> tuple[UUID, Planted]:
    """test_weighted_outcomes' optimization over ``metric_id`` and its 900 users' traffic; the
    outcomes planted per variant."""
    opt = await weighted.make_optimization(conn, org, metric_id)
    return opt, await weighted.simulate(conn, org, opt, users=900)


async def assert_weighted_cells_agree(
    wh: Warehouse,
    conn: asyncpg.Connection,
    connected: Optimization,
    managed: Optimization,
    planted: Planted,
) -> None:
    """Both trained: the connected optimization's cells are the managed one's, and the outcome
    counts add up to what was planted."""
    await training.train(wh, managed[0].id, managed[1], seed=3)
    await training.train(wh, connected[0].id, connected[1], seed=3)
    ours = await cells_of(conn, connected[1], outcomes=True)
    theirs = await cells_of(conn, managed[1], outcomes=True)
    assert ours == theirs and ours
    totals = [sum(r[7][k] for r in ours) for k in (0, 1)]
    assert totals == [sum(c[key] for c in planted.values()) for key in ("add_to_cart", "purchase")]
