"""A weighted-outcome metric on a connected ClickHouse (chdb): the same traffic with its rewards
in Levered or in the customer's ClickHouse gives the same cells, outcome counts included — one
outcome matched by name (a computed String column), one by value (a Float64 column)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.services.warehouse import Warehouse
from tests.conftest import Org
from tests.integration.test_weighted_outcomes import BASE
from tests.warehouse_traffic import (
    WEIGHTED_OUTCOMES,
    api_fixture,
    assert_weighted_cells_agree,
    checkout_metric,
    connect_clickhouse,
    create_metric,
    move_to_clickhouse,
    warehouse_fixture,
    weighted_amount,
    weighted_traffic,
)

pytestmark = pytest.mark.anyio

SECRET = "weighted-clickhouse-secret"
SHOP_SQL = (
    "SELECT user_id, ts, amount, if(amount >= 10, 'purchase', 'other') AS kind "
    "FROM purchases WHERE ts >= @start_date AND NOT refunded"
)

api = api_fixture(SECRET, on_chdb=True)
wh = warehouse_fixture(SECRET, on_chdb=True)


async def test_clickhouse_weighted_cells_equal_the_managed_ones(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    store: tuple[Path, Any],
) -> None:
    path, writer = store
    metric_id = await create_metric(api, other_org, **BASE)
    managed, planted = await weighted_traffic(conn, other_org, metric_id)
    await connect_clickhouse(api, org, path)
    wrong = await api.post(
        "/api/v2/metrics",
        json={
            "name": "x",
            "sql": SHOP_SQL,
            "anonymous_id_col": "user_id",
            "timestamp_col": "ts",
            "value_col": "amount",
            "name_col": "amount",
            "outcomes": WEIGHTED_OUTCOMES,
        },
        headers=org.headers,
    )
    assert wrong.status_code == 400 and "name_col 'amount' has type Float64" in wrong.text
    opt, traffic = await weighted_traffic(conn, org, await checkout_metric(api, org, SHOP_SQL))
    assert traffic == planted
    await move_to_clickhouse(conn, org, writer, weighted_amount)
    await assert_weighted_cells_agree(wh, conn, (org, opt), (other_org, managed), planted)
