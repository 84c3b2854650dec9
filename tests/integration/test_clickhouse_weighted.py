"""A weighted-outcome metric on a connected ClickHouse (chdb): the same traffic with its rewards
in Levered or in the customer's ClickHouse gives the same cells, outcome counts included — one
outcome matched by name (a computed String column), one by value (a Float64 column)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db.connected_clickhouse import param_time
from levered.db.pool import create_pool
from levered.server.app import create_app
from levered.services import training
from levered.services.secret_box import SecretBox
from levered.services.warehouse import Warehouse
from levered.settings import Settings
from tests.conftest import Org
from tests.integration.test_weighted_outcomes import (
    BASE,
    CART,
    PURCHASE,
    make_optimization,
    simulate,
)

pytestmark = pytest.mark.anyio

SECRET = "weighted-clickhouse-secret"
AMOUNTS = {"add_to_cart": 1, "purchase": 20, "page_view": 0.5}
SHOP_SQL = (
    "SELECT user_id, ts, amount, if(amount >= 10, 'purchase', 'other') AS kind "
    "FROM purchases WHERE ts >= @start_date AND NOT refunded"
)
CELLS = (
    "SELECT bucket, variant_number, holdout, context, exposures, reward_sum, reward_sumsq, "
    "outcome_counts FROM observation_cells WHERE optimization_id = $1 "
    "ORDER BY bucket, variant_number, holdout, context::text"
)


@pytest.fixture
def store(chdb_store: tuple[Path, Any]) -> tuple[Path, Any]:
    chdb_store[1].query("TRUNCATE TABLE analytics.purchases")
    return chdb_store


@pytest.fixture
async def api(db_url: str, store: tuple[Path, Any]) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = Settings(
        database_url=db_url,
        log_level="warning",
        secret_key=SECRET,
        scheduler=False,
        chdb_root=str(store[0].parent),
    )
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
async def wh(db_url: str, store: tuple[Path, Any]) -> AsyncIterator[Warehouse]:
    pool = await create_pool(db_url, min_size=1, max_size=6)
    try:
        yield Warehouse(pool, secrets=lambda: SecretBox(SECRET), chdb_root=str(store[0].parent))
    finally:
        await pool.close()


async def metric(api: AsyncTestClient[Any], org: Org, **body: Any) -> UUID:
    response = await api.post("/api/v2/metrics", json=body, headers=org.headers)
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def test_clickhouse_weighted_cells_equal_the_managed_ones(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    store: tuple[Path, Any],
) -> None:
    path, writer = store
    managed = await make_optimization(conn, other_org, await metric(api, other_org, **BASE))
    planted = await simulate(conn, other_org, managed, users=900)

    body = {
        "provider": "clickhouse",
        "dataset_id": "analytics",
        "credentials": {"url": f"chdb://{path}"},
    }
    response = await api.put("/api/v2/warehouse", json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    cart_by_value = {**CART, "match": {"by": "value", "value": AMOUNTS["add_to_cart"]}}
    purchase_by_kind = {**PURCHASE, "match": {"by": "name", "value": "purchase"}}
    wrong = await api.post(
        "/api/v2/metrics",
        json={
            "name": "x",
            "sql": SHOP_SQL,
            "anonymous_id_col": "user_id",
            "timestamp_col": "ts",
            "value_col": "amount",
            "name_col": "amount",
            "outcomes": [cart_by_value, purchase_by_kind],
        },
        headers=org.headers,
    )
    assert wrong.status_code == 400 and "name_col 'amount' has type Float64" in wrong.text
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
    values = ", ".join(
        f"('{r['anonymous_id']}', '{param_time(r['timestamp'])}', {AMOUNTS[r['name']]}, false)"
        for r in rows
    )
    writer.query(f"INSERT INTO analytics.purchases VALUES {values}")

    await training.train(wh, other_org.id, managed, seed=3)
    await training.train(wh, org.id, opt, seed=3)
    ours = [tuple(r) for r in await conn.fetch(CELLS, opt)]
    theirs = [tuple(r) for r in await conn.fetch(CELLS, managed)]
    assert ours == theirs and ours
    totals = [sum(r[7][k] for r in ours) for k in (0, 1)]
    assert totals == [sum(c[key] for c in planted.values()) for key in ("add_to_cart", "purchase")]
