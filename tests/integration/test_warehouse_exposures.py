"""The warehouse-native path: a table of the customer's own exposures in their PostgreSQL.

One generated data set twice: in Levered's managed store for one organization, and moved —
exposures and rewards — into the customer's database for another, whose exposures table is
named with a column mapping. Every pass (full, incremental after more traffic, a rebuild) runs
inside the customer's database and gives the managed cells; so does a plainer view of the same
table (text ids, integer variants, a timestamp without time zone). The mapping is checked
before it is stored, and another organization's rows in the customer's table reach nothing.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from levered.bandit.variants import VariantSpace
from levered.db import native_exposures
from levered.services import scheduler, training
from levered.services.warehouse import Warehouse
from tests.conftest import Org
from tests.customer import PURCHASES_SQL
from tests.integration.test_training import simulate
from tests.warehouse_traffic import (
    SAME_COUNTS,
    URL,
    api_fixture,
    assert_guardrails_agree,
    cells_of,
    connect_postgres_with_metric,
    extend,
    move_rewards,
    traffic,
    warehouse_fixture,
)

pytestmark = pytest.mark.anyio

SECRET = "own-exposures"
api = api_fixture(SECRET)
wh = warehouse_fixture(SECRET)

MAPPING = {
    "table": "app_exposures",
    "columns": {
        "anonymous_id": "user_id",
        "optimization_id": "optimization",
        "variant": "shown",
        "timestamp": "at",
        "context": "context",
        "holdout": "holdout",
    },
}
PLAIN = {
    "table": "app_exposures_plain",
    "columns": {
        "anonymous_id": "user_id",
        "optimization_id": "optimization",
        "variant": "shown_number",
        "timestamp": "at_utc",
        "context": "context",
        "holdout": "holdout",
    },
}


async def move_exposures(conn: asyncpg.Connection, org: Org, shop: asyncpg.Connection) -> int:
    """The organization's exposures, moved from Levered's store to the customer's table."""
    rows = await conn.fetch(
        "DELETE FROM warehouse.exposures WHERE organization_id = $1 RETURNING anonymous_id, "
        'optimization_id, variant, variant_number, context, "timestamp", holdout',
        org.id,
    )
    await shop.executemany(
        "INSERT INTO analytics.app_exposures VALUES ($1, $2, $3::text::jsonb, $4, "
        "$5::text::jsonb, $6, $7)",
        [
            (
                r["anonymous_id"],
                r["optimization_id"],
                _json(r["variant"]),
                r["variant_number"],
                _json(r["context"]),
                r["timestamp"],
                r["holdout"],
            )
            for r in rows
        ],
    )
    return len(rows)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def own_table_traffic(
    api: AsyncTestClient[Any],
    conn: asyncpg.Connection,
    org: Org,
    customer: str,
    shop: asyncpg.Connection,
    **simulate: Any,
) -> UUID:
    """An optimization with ``simulate`` traffic, its exposures and rewards moved into the
    customer's database, which is connected with ``app_exposures`` mapped."""
    opt = await traffic(conn, org, **simulate)
    await move_rewards(conn, org, shop)
    await move_exposures(conn, org, shop)
    await connect_postgres_with_metric(api, conn, org, customer)
    await put_mapping(api, org, MAPPING)
    return opt


async def put_mapping(
    api: AsyncTestClient[Any], org: Org, mapping: dict[str, Any]
) -> dict[str, Any]:
    response = await api.put(f"{URL}/exposures", json=mapping, headers=org.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_the_customers_exposures_table_gives_the_managed_cells(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    managed_org, native_org = other_org, org
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=10)
    opts = {}
    for who in (managed_org, native_org):
        opts[who.id] = await traffic(conn, who, users=600, seed=21, start=start)
    moved = await move_rewards(conn, native_org, shop)
    exposures = await move_exposures(conn, native_org, shop)
    assert exposures == 600 and moved > 30
    await connect_postgres_with_metric(api, conn, native_org, customer)
    status = await put_mapping(api, native_org, MAPPING)
    assert status["exposures"] == MAPPING
    shown = await api.get(URL, headers=native_org.headers)
    assert shown.json()["exposures"]["table"] == "app_exposures"
    everyone = (managed_org, native_org)

    async def same_cells() -> list[tuple[Any, ...]]:
        found = [await cells_of(conn, opts[who.id]) for who in everyone]
        assert found[0] == found[1]
        return found[0]

    # 1. A full pass four hours in, then more traffic lands in each store and an incremental one.
    for who in everyone:
        assert (await extend(wh, conn, who, opts[who.id], as_of=start + timedelta(hours=4))).rebuilt
    first = await same_cells()
    assert 0 < sum(c[5] for c in first) < moved
    later = start + timedelta(hours=6)
    for who in everyone:
        await simulate(conn, who, opts[who.id], users=200, seed=22, prefix="w", start=later)
    more = await move_rewards(conn, native_org, shop)
    assert await move_exposures(conn, native_org, shop) == 200
    for who in everyone:
        done = await extend(wh, conn, who, opts[who.id])
        assert not done.rebuilt
    second = await same_cells()
    assert sum(c[5] for c in second) == moved + more
    assert sum(c[4] for c in second) == 800

    # 2. A rebuild agrees, and so does a model trained on each.
    for who in everyone:
        assert (await extend(wh, conn, who, opts[who.id], rebuild=True)).rebuilt
    assert await same_cells() == second
    versions = [await training.train(wh, who.id, opts[who.id], seed=5) for who in everyone]
    counts = [{k: v for k, v in v.counts.items() if k in SAME_COUNTS} for v in versions]
    assert counts[0] == counts[1] and len(counts[0]) == len(SAME_COUNTS)

    # Guardrails read the same table.
    await assert_guardrails_agree(
        api, conn, (native_org, opts[native_org.id]), (managed_org, opts[managed_org.id]), 800
    )

    # 3. The plainer view (text ids, variant numbers, a timestamp without time zone): a new
    # mapping is a new source, so the next pass rebuilds, to the same cells.
    await put_mapping(api, native_org, PLAIN)
    assert (await extend(wh, conn, native_org, opts[native_org.id])).rebuilt
    assert await same_cells() == second

    # The observations listing pages through the customer's table like through Levered's.
    pages = []
    for who in everyone:
        listed = await api.get(
            f"/api/v2/optimizations/{opts[who.id]}/observations?size=100&page=2",
            headers=who.headers,
        )
        assert listed.status_code == 200, listed.text
        body = listed.json()
        pages.append(
            (
                body["total"],
                [
                    (o["anonymous_id"], o["variant"], o["context"], o["holdout"], o["reward"])
                    for o in body["observations"]
                ],
            )
        )
    assert pages[0] == pages[1] and len(pages[0][1]) == 100
    assert any(reward for *_, reward in pages[0][1])

    # 4. Back to Levered's own exposures (none left there): a rebuild to no exposures.
    cleared = await api.delete(f"{URL}/exposures", headers=native_org.headers)
    assert cleared.status_code == 200 and cleared.json()["exposures"] is None
    assert (await extend(wh, conn, native_org, opts[native_org.id])).rebuilt
    assert await cells_of(conn, opts[native_org.id]) == []


async def test_another_organizations_rows_in_the_table_reach_nothing(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    """The attacker writes rows for the victim's optimization into their own table: neither
    the attacker's cells nor the victim's (managed) cells change."""
    attacker, victim = org, other_org
    start = datetime.now(UTC) - timedelta(days=2)
    own = await traffic(conn, attacker, users=90, seed=3, start=start)
    theirs = await traffic(conn, victim, users=90, seed=3, start=start)
    await move_rewards(conn, attacker, shop)
    await move_exposures(conn, attacker, shop)
    await extend(wh, conn, victim, theirs)
    victim_cells = await cells_of(conn, theirs)
    await shop.execute(
        "INSERT INTO analytics.app_exposures SELECT user_id, $1, shown, shown_number, context, "
        "at, holdout FROM analytics.app_exposures WHERE optimization = $2",
        theirs,
        own,
    )
    await connect_postgres_with_metric(api, conn, attacker, customer)
    await put_mapping(api, attacker, MAPPING)
    done = await extend(wh, conn, attacker, own)
    assert done.exposures == 90
    assert sum(c[4] for c in await cells_of(conn, own)) == 90
    await extend(wh, conn, victim, theirs, rebuild=True)
    assert await cells_of(conn, theirs) == victim_cells
    assert sum(c[4] for c in victim_cells) == 90
    # And the victim's own id in an API call of the attacker is not theirs to read.
    response = await api.get(f"/api/v2/optimizations/{theirs}/results", headers=attacker.headers)
    assert response.status_code == 404


async def test_a_mapping_is_checked_before_it_is_stored(
    api: AsyncTestClient[Any],
    conn: asyncpg.Connection,
    org: Org,
    customer: str,
) -> None:
    put = f"{URL}/exposures"
    # On the managed warehouse there is no table of the organization's own to read.
    refused = await api.put(put, json=MAPPING, headers=org.headers)
    assert (
        refused.status_code == 409 and refused.json()["error"]["code"] == "warehouse_not_connected"
    )
    await connect_postgres_with_metric(api, conn, org, customer)
    cases = [
        ({**MAPPING, "table": "nope"}, "$.table", "no table or view 'nope'"),
        ({**MAPPING, "table": "secret_things"}, "$.table", "no table or view"),
        (
            {**MAPPING, "columns": {**MAPPING["columns"], "variant": "shwon"}},
            "$.columns.variant",
            "no column 'shwon' in 'app_exposures' (its columns: user_id, optimization, shown",
        ),
        (
            {**MAPPING, "columns": {**MAPPING["columns"], "timestamp": "user_id"}},
            "$.columns.timestamp",
            "column 'user_id' is text; timestamp takes timestamp with time zone",
        ),
        (
            {**MAPPING, "columns": {**MAPPING["columns"], "holdout": "shown_number"}},
            "$.columns.holdout",
            "column 'shown_number' is integer; holdout takes boolean",
        ),
    ]
    for body, path, message in cases:
        response = await api.put(put, json=body, headers=org.headers)
        assert response.status_code == 400, (body, response.text)
        details = response.json()["error"]["details"]
        assert details[0]["path"] == path and message in details[0]["message"], details
    missing = await api.put(
        put, json={"table": "app_exposures", "columns": {}}, headers=org.headers
    )
    assert missing.status_code == 400 and "anonymous_id" in missing.text
    assert (await api.get(URL, headers=org.headers)).json()["exposures"] is None
    # The customer's database out of reach while checking: a retryable 503, nothing stored.
    await conn.execute(
        "UPDATE warehouse_connections SET settings = jsonb_set(settings, '{port}', '1') "
        "WHERE organization_id = $1",
        org.id,
    )
    unreachable = await api.put(put, json=MAPPING, headers=org.headers)
    assert unreachable.status_code == 503, unreachable.text
    assert unreachable.json()["error"]["code"] == "warehouse_unavailable"
    stored = await conn.fetchval(
        "SELECT exposures FROM warehouse_connections WHERE organization_id = $1", org.id
    )
    assert stored is None


async def test_the_scheduler_trains_an_optimization_on_its_own_exposures_table(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    """Due with no version; not due right after training; due once an exposure matured in the
    customer's table (the scheduler looks there) or the version is older than the hourly
    poll (rewards may have landed); a table that stopped reading as mapped is not due."""
    opt = await own_table_traffic(api, conn, org, customer, shop, users=60, seed=4)
    assert (org.id, opt) in await scheduler.due(wh)
    assert await scheduler.run_once(wh) == 1
    version = await training.train(wh, org.id, opt, seed=1)
    assert sum(version.counts["exposures"].values()) == 60
    assert (org.id, opt) not in await scheduler.due(wh)
    # The version's data as if trained an hour earlier, and an exposure of that hour, whose
    # one-hour window has just closed, lands in the customer's table: due.
    await conn.execute(
        "UPDATE model_versions "
        "SET counts = jsonb_set(counts, '{data_through}', to_jsonb($1::text)) "
        "WHERE model_id IN (SELECT id FROM models WHERE optimization_id = $2)",
        (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        opt,
    )
    assert (org.id, opt) not in await scheduler.due(wh)
    await shop.execute(
        "INSERT INTO analytics.app_exposures SELECT 'late-user', optimization, shown, "
        "shown_number, context, now() - interval '61 minutes', holdout "
        "FROM analytics.app_exposures WHERE optimization = $1 LIMIT 1",
        opt,
    )
    assert (org.id, opt) in await scheduler.due(wh)
    assert await scheduler.run_once(wh) == 1
    assert (org.id, opt) not in await scheduler.due(wh)
    # The table renamed under Levered: logged, not due (training would only fail).
    await shop.execute("ALTER TABLE analytics.app_exposures RENAME TO gone")
    try:
        await shop.execute(
            "INSERT INTO analytics.gone SELECT 'later-user', optimization, shown, shown_number, "
            "context, now() - interval '61 minutes', holdout FROM analytics.gone LIMIT 1"
        )
        assert (org.id, opt) not in await scheduler.due(wh)
        model_id = await conn.fetchval("SELECT id FROM models WHERE optimization_id = $1", opt)
        refused = await api.post(f"/api/v2/models/{model_id}/train", headers=org.headers)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "exposures_table_invalid"
        assert "no table or view 'app_exposures'" in error["message"]
    finally:
        await shop.execute("ALTER TABLE analytics.gone RENAME TO app_exposures")
    await conn.execute(
        "UPDATE model_versions SET window_end = $1 "
        "WHERE model_id IN (SELECT id FROM models WHERE optimization_id = $2)",
        datetime.now(UTC) - timedelta(minutes=61),
        opt,
    )
    assert (org.id, opt) in await scheduler.due(wh)


async def test_json_variants_are_numbered_as_the_design_numbers_them(
    conn: asyncpg.Connection,
) -> None:
    """Every variant of a 3 × 2 × 2 design (string and boolean levels), as JSON, gets the
    number :class:`VariantSpace` gives it; a missing factor or an unknown level gets none, and
    so does a variant number out of range."""
    design = [
        {"name": "headline", "levels": ["a", "b", "c"]},
        {"name": "cta", "levels": ["go", "it's on"]},
        {"name": "badge", "levels": [True, False]},
    ]
    space = VariantSpace.of(design)
    good = [(h, c, b) for h in range(3) for c in range(2) for b in range(2)]
    variants = [{f.name: f.levels[i] for f, i in zip(space.factors, g, strict=True)} for g in good]
    bad = [{"headline": "a", "cta": "go"}, {"headline": "d", "cta": "go", "badge": True},
           {"headline": "a", "cta": "go", "badge": "true"}]  # fmt: skip
    await conn.execute("CREATE TEMP TABLE t (i int, v jsonb)")
    for i, v in enumerate(variants + bad):
        await conn.execute("INSERT INTO t VALUES ($1, $2::text::jsonb)", i, _json(v))
    as_json = native_exposures.variant_number_sql("t.v", "jsonb", design)
    found = dict(await conn.fetch(f"SELECT i, {as_json} FROM t ORDER BY i"))
    assert [found[i] for i in range(len(good))] == [space.number_of_levels(g) for g in good]
    assert [found[len(good) + i] for i in range(len(bad))] == [None] * len(bad)
    as_number = native_exposures.variant_number_sql("t.i", "integer", design)
    numbers = dict(await conn.fetch(f"SELECT i, {as_number} FROM t ORDER BY i"))
    assert numbers[0] is None and numbers[1] == 1 and numbers[12] == 12 and numbers[13] is None


async def test_the_customers_database_dropping_mid_pass_stores_nothing(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    """The customer's database kills the pass's session while its chunk statement runs: a
    503 ``warehouse_unavailable`` (retryable), the cells and the model as they were, and the
    next pass succeeds."""
    opt = await own_table_traffic(api, conn, org, customer, shop, users=120, seed=6)
    first = await training.train(wh, org.id, opt, seed=1)
    before = await cells_of(conn, opt)
    # The metric now sleeps inside the chunk statement (an init plan: run even when the chunk
    # has no rewards), long enough to be caught at it.
    await conn.execute(
        "UPDATE metrics SET sql = $2 WHERE organization_id = $1",
        org.id,
        "SELECT user_id, ts, amount FROM purchases "
        "WHERE ts >= @start_date AND (SELECT pg_sleep(5)) IS NOT NULL",
    )

    async def kill_the_pass() -> bool:
        killer = await asyncpg.connect(customer)
        try:
            for _ in range(400):
                if await killer.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE usename = 'reader' AND query LIKE '%pg_sleep(5)%' AND state = 'active'"
                ):
                    return True
                await asyncio.sleep(0.025)
            return False
        finally:
            await killer.close()

    # In a thread of its own: the test client's request holds this event loop while it runs.
    killed: list[bool] = []
    thread = threading.Thread(target=lambda: killed.append(asyncio.run(kill_the_pass())))
    thread.start()
    model_id = await conn.fetchval("SELECT id FROM models WHERE optimization_id = $1", opt)
    response = await api.post(f"/api/v2/models/{model_id}/train?rebuild=true", headers=org.headers)
    thread.join()
    assert killed == [True], "the pass's statement was never seen running"
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "warehouse_unavailable"
    assert await cells_of(conn, opt) == before
    current = await conn.fetchval("SELECT current_version FROM models WHERE id = $1", model_id)
    assert current == first.version
    await conn.execute(
        "UPDATE metrics SET sql = $2 WHERE organization_id = $1", org.id, PURCHASES_SQL
    )
    again = await training.train(wh, org.id, opt, seed=1)
    assert again.version == first.version + 1


async def test_a_bad_row_in_the_table_fails_training_naming_the_table(
    api: AsyncTestClient[Any],
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    customer: str,
    shop: asyncpg.Connection,
) -> None:
    """A text context that is not JSON fails the pass inside the customer's database: a 409
    that names the exposures table as well as the metric, and nothing stored."""
    opt = await traffic(conn, org, users=30, seed=8)
    await move_rewards(conn, org, shop)
    await move_exposures(conn, org, shop)
    await shop.execute(
        "DROP TABLE IF EXISTS analytics.text_exposures; "
        "CREATE TABLE analytics.text_exposures AS SELECT user_id, optimization, shown, "
        "context::text AS context, at, holdout FROM analytics.app_exposures; "
        "UPDATE analytics.text_exposures SET context = '{country: US' "
        "WHERE ctid = (SELECT min(ctid) FROM analytics.text_exposures); "
        "GRANT SELECT ON analytics.text_exposures TO reader"
    )
    try:
        await connect_postgres_with_metric(api, conn, org, customer)
        await put_mapping(api, org, {**MAPPING, "table": "text_exposures"})
        model_id = await conn.fetchval("SELECT id FROM models WHERE optimization_id = $1", opt)
        response = await api.post(f"/api/v2/models/{model_id}/train", headers=org.headers)
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "metric_failed"
        assert "the exposures table (as mapped)" in error["message"]
        assert "json" in error["message"]
        assert await cells_of(conn, opt) == []
    finally:
        await shop.execute("DROP TABLE analytics.text_exposures")


def test_column_types_are_judged_without_their_modifiers() -> None:
    assert native_exposures.base_type("character varying(40)") == "character varying"
    assert native_exposures.base_type("timestamp(3) with time zone") == "timestamp with time zone"
    assert native_exposures.base_type("numeric(10,2)") == "numeric"
    assert native_exposures.base_type("jsonb") == "jsonb"
