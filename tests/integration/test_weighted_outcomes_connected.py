"""A weighted-outcome metric on a connected PostgreSQL (a second, real cluster plays the
customer's): the same traffic with its rewards in Levered or in the customer's database gives the
same cells, outcome counts included — one outcome matched by name (a computed text column),
one by value (a numeric column, cast on the customer's server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db.pool import create_pool
from levered.server.app import create_app
from levered.services import training
from levered.services.secret_box import SecretBox
from levered.services.warehouse import Warehouse
from levered.settings import Settings
from tests.conftest import Org
from tests.customer import credentials
from tests.integration.test_weighted_outcomes import (
    BASE,
    CART,
    PURCHASE,
    make_optimization,
    simulate,
)

pytestmark = pytest.mark.anyio

SECRET = "weighted-connected-secret"
AMOUNTS = {"add_to_cart": 1, "purchase": 20, "page_view": 0.5}
SHOP_SQL = (
    "SELECT user_id, ts, amount, CASE WHEN amount >= 10 THEN 'purchase' ELSE 'other' END AS kind "
    "FROM purchases WHERE ts >= @start_date AND NOT refunded"
)
CELLS = (
    "SELECT bucket, variant_number, holdout, context, exposures, reward_sum, reward_sumsq, "
    "outcome_counts FROM observation_cells WHERE optimization_id = $1 "
    "ORDER BY bucket, variant_number, holdout, context::text"
)


@pytest.fixture
async def shop(customer: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(customer)
    await conn.execute("TRUNCATE analytics.purchases")
    try:
        yield conn
    finally:
        await conn.close()


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


@pytest.fixture
async def wh(db_url: str) -> AsyncIterator[Warehouse]:
    pool = await create_pool(db_url, min_size=1, max_size=6)
    try:
        yield Warehouse(pool, secrets=lambda: SecretBox(SECRET))
    finally:
        await pool.close()


async def metric(api: AsyncTestClient[Any], org: Org, **body: Any) -> UUID:
    response = await api.post("/api/v2/metrics", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def test_connected_weighted_cells_equal_the_managed_ones(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    managed = await make_optimization(conn, other_org, await metric(api, other_org, **BASE))
    planted = await simulate(conn, other_org, managed, users=900)

    connected = {"provider": "postgres", "dataset_id": "analytics"}
    response = await api.put(
        "/api/v2/warehouse", json={**connected, "credentials": credentials(customer)},
        headers=org.headers,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    cart_by_value = {**CART, "match": {"by": "value", "value": AMOUNTS["add_to_cart"]}}
    purchase_by_kind = {**PURCHASE, "match": {"by": "name", "value": "purchase"}}
    opt = await make_optimization(
        conn,
        org,
        await metric(
            api,
            org,
            name="Checkout value",
            sql=SHOP_SQL,
            anonymous_id_col="user_id",
            timestamp_col="ts",
            value_col="amount",
            name_col="kind",
            outcomes=[cart_by_value, purchase_by_kind],
        ),
    )
    assert await simulate(conn, org, opt, users=900) == planted
    rows = await conn.fetch(
        "DELETE FROM warehouse.rewards WHERE organization_id = $1 "
        "RETURNING anonymous_id, timestamp, name",
        org.id,
    )
    await shop.executemany(
        "INSERT INTO analytics.purchases VALUES ($1, $2, $3, false)",
        [(r["anonymous_id"], r["timestamp"], AMOUNTS[r["name"]]) for r in rows],
    )

    await training.train(wh, other_org.id, managed, seed=3)
    await training.train(wh, org.id, opt, seed=3)
    ours = [tuple(r) for r in await conn.fetch(CELLS, opt)]
    theirs = [tuple(r) for r in await conn.fetch(CELLS, managed)]
    assert ours == theirs and ours
    totals = [sum(r[7][k] for r in ours) for k in (0, 1)]
    assert totals == [sum(c[key] for c in planted.values()) for key in ("add_to_cart", "purchase")]
