"""A weighted-outcome metric on a connected PostgreSQL (a second, real cluster plays the
customer's): the same traffic with its rewards in Levered or in the customer's database gives the
same cells, outcome counts included — one outcome matched by name (a computed text column),
one by value (a numeric column, cast on the customer's server)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.services.warehouse import Warehouse
from tests.conftest import Org
from tests.integration.test_weighted_outcomes import BASE
from tests.warehouse_traffic import (
    api_fixture,
    assert_weighted_cells_agree,
    checkout_metric,
    connect_postgres,
    create_metric,
    move_rewards,
    warehouse_fixture,
    weighted_amount,
    weighted_traffic,
)

pytestmark = pytest.mark.anyio

SECRET = "weighted-connected-secret"
SHOP_SQL = (
    "SELECT user_id, ts, amount, CASE WHEN amount >= 10 THEN 'purchase' ELSE 'other' END AS kind "
    "FROM purchases WHERE ts >= @start_date AND NOT refunded"
)

api = api_fixture(SECRET, pool_min_size=1, pool_max_size=5)
wh = warehouse_fixture(SECRET)


async def test_connected_weighted_cells_equal_the_managed_ones(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    metric_id = await create_metric(api, other_org, **BASE)
    managed, planted = await weighted_traffic(conn, other_org, metric_id)
    await connect_postgres(api, org, customer)
    opt, traffic = await weighted_traffic(conn, org, await checkout_metric(api, org, SHOP_SQL))
    assert traffic == planted
    await move_rewards(conn, org, shop, weighted_amount)
    await assert_weighted_cells_agree(wh, conn, (org, opt), (other_org, managed), planted)
