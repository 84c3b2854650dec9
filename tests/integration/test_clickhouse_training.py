"""One generated data set, three warehouses: managed, a connected PostgreSQL, a connected
ClickHouse (chdb). The exposures are Levered's in all three; the rewards are moved to the
customer's PostgreSQL for one organization and to the customer's ClickHouse for another. Every
pass — full, then incremental after more traffic arrives, then a rebuild — gives the same cells.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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
from tests.clickhouse_store import PURCHASES_SQL
from tests.conftest import Org, make_org
from tests.integration.test_connected_postgres import (
    SAME_COUNTS,
    cells_of,
    connect_with_metric,
    move_rewards,
)
from tests.integration.test_training import make_optimization, simulate

pytestmark = pytest.mark.anyio

SECRET = "three-warehouses"


@pytest.fixture
async def shop(customer: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(customer)
    await conn.execute("TRUNCATE analytics.purchases")
    try:
        yield conn
    finally:
        await conn.close()


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


async def move_to_clickhouse(conn: asyncpg.Connection, org: Org, writer: Any) -> int:
    """The organization's simulated rewards, moved from the managed store to the chdb one."""
    rows = await conn.fetch(
        "DELETE FROM warehouse.rewards WHERE organization_id = $1 "
        "RETURNING anonymous_id, timestamp, value",
        org.id,
    )
    if rows:
        values = ", ".join(
            f"('{r['anonymous_id']}', '{param_time(r['timestamp'])}', {r['value']}, false)"
            for r in rows
        )
        writer.query(f"INSERT INTO analytics.purchases VALUES {values}")
    return len(rows)


async def connect_clickhouse(
    api: AsyncTestClient[Any], conn: asyncpg.Connection, org: Org, path: Path
) -> None:
    await conn.execute(
        "UPDATE metrics SET sql = $2, anonymous_id_col = 'user_id', timestamp_col = 'ts', "
        "value_col = 'amount' WHERE organization_id = $1",
        org.id,
        PURCHASES_SQL,
    )
    body = {
        "provider": "clickhouse",
        "dataset_id": "analytics",
        "credentials": {"url": f"chdb://{path}"},
    }
    response = await api.put("/api/v2/warehouse", json=body, headers=org.headers)
    assert response.status_code == 200, response.text


async def extend(
    wh: Warehouse, conn: asyncpg.Connection, org: Org, opt: UUID, **kwargs: Any
) -> cells.Pass:
    found = await find_target(conn, org.id, opt)
    assert found is not None and found[1] is not None
    done = await cells.extend(wh, org.id, found[0], found[1], **kwargs)
    assert done is not None
    return done


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
        opts[who.id] = await make_optimization(conn, who)
        await simulate(conn, who, opts[who.id], users=600, seed=11, start=start)
    moved = await move_rewards(conn, pg_org, shop)
    assert moved > 30 and await move_to_clickhouse(conn, ch_org, writer) == moved
    await connect_with_metric(api, conn, pg_org, customer)
    await connect_clickhouse(api, conn, ch_org, path)
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
    opt = await make_optimization(conn, org)
    await simulate(conn, org, opt, users=200, seed=2)
    await move_to_clickhouse(conn, org, writer)
    await connect_clickhouse(api, conn, org, path)
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
    managed = await make_optimization(conn, other_org)
    await simulate(conn, other_org, managed, users=400, seed=9)
    opt = await make_optimization(conn, org)
    await simulate(conn, org, opt, users=400, seed=9)
    await move_to_clickhouse(conn, org, writer)
    await connect_clickhouse(api, conn, org, path)
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
