"""One generated data set, three warehouses: managed, a connected PostgreSQL, a connected
ClickHouse (chdb). The exposures are Levered's in all three; the rewards are moved to the
customer's PostgreSQL for one organization and to the customer's ClickHouse for another. Every
pass — full, then incremental after more traffic arrives, then a rebuild — gives the same cells.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.server.app import create_app
from levered.services import training
from levered.services.warehouse import Warehouse
from levered.settings import Settings
from tests.clickhouse_store import PURCHASES_SQL
from tests.conftest import Org, make_org
from tests.integration.test_training import simulate
from tests.warehouse_traffic import (
    SAME_COUNTS,
    api_fixture,
    assert_guardrails_agree,
    cells_of,
    connect_clickhouse_with_metric,
    connect_postgres_with_metric,
    extend,
    move_rewards,
    move_to_clickhouse,
    same_traffic,
    traffic,
    warehouse_fixture,
)

pytestmark = pytest.mark.anyio

SECRET = "three-warehouses"


api = api_fixture(SECRET, on_chdb=True)
wh = warehouse_fixture(SECRET, on_chdb=True)


async def test_the_same_data_gives_the_same_cells_on_all_three_warehouses(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    customer: str,
    shop: asyncpg.Connection,
    store: tuple[Path, Any],
) -> None:
    path, writer = store
    managed_org, pg_org, ch_org = other_org, org, await make_org(conn, "Initech")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=10)
    opts = {}
    for who in (managed_org, pg_org, ch_org):
        opts[who.id] = await traffic(conn, who, users=600, seed=11, start=start)
    moved = await move_rewards(conn, pg_org, shop)
    assert moved > 30 and await move_to_clickhouse(conn, ch_org, writer) == moved
    await connect_postgres_with_metric(api, conn, pg_org, customer)
    await connect_clickhouse_with_metric(api, conn, ch_org, path, PURCHASES_SQL)
    everyone = (managed_org, pg_org, ch_org)

    async def same_cells() -> list[tuple[Any, ...]]:
        found = [await cells_of(conn, opts[who.id]) for who in everyone]
        assert found[0] == found[1] == found[2]
        return found[0]

    # 1. A full pass as of four hours in: part of the first traffic has matured.
    first_as_of = start + timedelta(hours=4)
    for who in everyone:
        done = await extend(wh, conn, who, opts[who.id], as_of=first_as_of)
        assert done.rebuilt
    first = await same_cells()
    assert 0 < sum(c[5] for c in first) < moved

    # 2. More traffic arrives (rewards land in each warehouse), and an incremental pass.
    later = start + timedelta(hours=6)
    for who in everyone:
        await simulate(conn, who, opts[who.id], users=200, seed=12, prefix="w", start=later)
    more = await move_rewards(conn, pg_org, shop)
    assert more > 5 and await move_to_clickhouse(conn, ch_org, writer) == more
    for who in everyone:
        done = await extend(wh, conn, who, opts[who.id])
        assert not done.rebuilt
    second = await same_cells()
    assert sum(c[5] for c in second) == moved + more

    # 3. A rebuild from scratch agrees with the incremental cells, on every warehouse.
    for who in everyone:
        assert (await extend(wh, conn, who, opts[who.id], rebuild=True)).rebuilt
    assert await same_cells() == second

    # and a model trained on each is the same model
    versions = [await training.train(wh, who.id, opts[who.id], seed=5) for who in everyone]
    counts = [{k: v for k, v in v.counts.items() if k in SAME_COUNTS} for v in versions]
    assert counts[0] == counts[1] == counts[2] and len(counts[0]) == len(SAME_COUNTS)

    # The observations listing attributes from scratch through the same reward sources.
    pages = []
    for who in everyone:
        listed = await api.get(
            f"/api/v2/optimizations/{opts[who.id]}/observations?size=100&page=2",
            headers=who.headers,
        )
        assert listed.status_code == 200, listed.text
        pages.append(
            [
                (o["anonymous_id"], o["converted"], o["reward"])
                for o in listed.json()["observations"]
            ]
        )
    assert pages[0] == pages[1] == pages[2] and any(c for _, c, _ in pages[0])


async def test_a_warehouse_gone_fails_training_clearly_and_serving_goes_on(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    db_url: str,
    conn: asyncpg.Connection,
    org: Org,
    store: tuple[Path, Any],
    tmp_path: Path,
) -> None:
    """The directory is no longer allowed (the operator moved LEVERED_CHDB_ROOT): training is a
    503 ``warehouse_unavailable``, and the version trained before is still served."""
    path, writer = store
    opt = await traffic(conn, org, users=200, seed=2)
    await move_to_clickhouse(conn, org, writer)
    await connect_clickhouse_with_metric(api, conn, org, path, PURCHASES_SQL)
    first = await training.train(wh, org.id, opt, seed=1)
    settings = Settings(
        database_url=db_url,
        log_level="warning",
        secret_key=SECRET,
        scheduler=False,
        chdb_root=str(tmp_path),
    )
    async with AsyncTestClient(create_app(settings)) as moved:
        model_id = await conn.fetchval("SELECT id FROM models WHERE optimization_id = $1", opt)
        response = await moved.post(f"/api/v2/models/{model_id}/train", headers=org.headers)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "warehouse_unavailable"
        served = await moved.post(
            f"/api/v2/optimizations/{opt}/serve", json={"anonymous_id": "new-user"}
        )
        assert served.status_code == 200, served.text
        assert served.json()["model_version"] == first.version


async def test_guardrails_read_clickhouse_like_the_managed_warehouse(
    api: AsyncTestClient[Any],
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    store: tuple[Path, Any],
) -> None:
    """The purchases metric as a guardrail: the same traffic with its rewards in the customer's
    ClickHouse or in Levered's store gives the same evaluation."""
    path, writer = store
    managed, opt = await same_traffic(conn, other_org, org, users=400, seed=9)
    await move_to_clickhouse(conn, org, writer)
    await connect_clickhouse_with_metric(api, conn, org, path, PURCHASES_SQL)
    await assert_guardrails_agree(api, conn, (org, opt), (other_org, managed), users=400)
