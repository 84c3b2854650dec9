"""A connected ClickHouse through chdb: the real engine, in this process, on a data directory.

The store (tests/clickhouse_store.py) has ``analytics.purchases`` (the rewards), a view, and
``other.secrets``, which a connection to ``analytics`` must never reach. The attacker-side
tests are in test_clickhouse_escapes.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db import clickhouse_engine as engine
from levered.db import connected_clickhouse as ch
from levered.db.sandbox import Limits
from levered.server.app import create_app
from levered.services.secret_box import SecretBox
from levered.settings import Settings
from tests.clickhouse_store import build_in_subprocess
from tests.conftest import Org
from tests.warehouse_traffic import (
    URL,
    api_fixture,
    check_purchases_catalog,
    clickhouse_body,
    connect_clickhouse,
    post_revenue,
    revenue_preview,
)

pytestmark = pytest.mark.anyio

SECRET = "connected-clickhouse-secret"

api = api_fixture(SECRET, on_chdb=True, pool_min_size=1, pool_max_size=5)


async def test_connect_tests_and_stores_and_status_shows_it(
    api: AsyncTestClient[Any], org: Org, store: tuple[Path, Any], conn: asyncpg.Connection
) -> None:
    path, _ = store
    status = await connect_clickhouse(api, org, path)
    assert (status["provider"], status["healthy"], status["dataset_id"]) == (
        "clickhouse",
        True,
        "analytics",
    )
    assert status["connection"]["url"] == f"chdb://{path}"
    assert status["connection"]["password_set"] is False
    tables = {t["name"]: t["description"] for t in status["tables"]}
    assert tables == {"big_orders": None, "purchases": "One row per order"}
    stored = await conn.fetchrow(
        "SELECT provider, settings, secret FROM warehouse_connections WHERE organization_id = $1",
        org.id,
    )
    assert stored is not None and stored["provider"] == "clickhouse"
    assert stored["settings"] == {"url": f"chdb://{path}", "username": "default"}


async def test_an_http_password_is_encrypted_and_never_returned(
    api: AsyncTestClient[Any], org: Org, conn: asyncpg.Connection
) -> None:
    """No ClickHouse server here: the connection test fails (400, nothing stored), and the
    password appears in no answer."""
    password = "ch-password-never-shown"
    response = await api.put(
        URL,
        json={
            "provider": "clickhouse",
            "dataset_id": "analytics",
            "credentials": {"url": "http://127.0.0.1:1", "password": password},
        },
        headers=org.headers,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "warehouse_connection_failed"
    assert response.json()["error"]["details"][0]["path"] == "$.credentials.url"
    assert password not in response.text
    assert await conn.fetchval("SELECT count(*) FROM warehouse_connections") == 0
    assert SecretBox(SECRET).open(SecretBox(SECRET).seal(password)) == password


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"url": "chdb:///etc"}, "$.credentials.url", "not inside this server's LEVERED_CHDB_ROOT"),
        ({"url": "chdb://host/x"}, "$.credentials.url", "absolute path and no host"),
        ({"url": "ftp://example.com:21"}, "$.credentials.url", "expected http(s)://host:port"),
        ({"url": "ROOT/../shop"}, "$.credentials.url", "not inside"),
        ({"url": "ROOT/empty"}, "$.credentials.url", "not a ClickHouse (chdb) data directory"),
        ({"colour": "red"}, "$.credentials", "unknown field"),
        ({"dataset_id": "nowhere"}, "$.dataset_id", "no database 'nowhere'"),
        ({"dataset_id": "a;b"}, "$.dataset_id", "letters, digits"),
    ],
)
async def test_a_bad_connection_is_a_400_naming_the_field_and_stores_nothing(
    api: AsyncTestClient[Any],
    org: Org,
    store: tuple[Path, Any],
    conn: asyncpg.Connection,
    change: dict[str, Any],
    path: str,
    words: str,
) -> None:
    root = store[0].parent
    (root / "empty").mkdir(exist_ok=True)
    sent = clickhouse_body(store[0])
    if "dataset_id" in change:
        sent["dataset_id"] = change["dataset_id"]
    elif "url" in change:
        url = change["url"].replace("ROOT", f"chdb://{root}")
        sent["credentials"]["url"] = url
    else:
        sent["credentials"] |= change
    response = await api.put(URL, json=sent, headers=org.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["details"][0]["path"] == path
    assert words in error["message"], error["message"]
    assert await conn.fetchval("SELECT count(*) FROM warehouse_connections") == 0


async def test_a_server_without_a_chdb_root_refuses_chdb(
    db_url: str, org: Org, store: tuple[Path, Any]
) -> None:
    settings = Settings(database_url=db_url, log_level="warning", secret_key=SECRET)
    async with AsyncTestClient(create_app(settings)) as client:
        response = await client.put(URL, json=clickhouse_body(store[0]), headers=org.headers)
    assert response.status_code == 400, response.text
    assert "LEVERED_CHDB_ROOT" in response.json()["error"]["message"]


async def test_one_data_directory_belongs_to_one_organization(
    api: AsyncTestClient[Any], org: Org, other_org: Org, store: tuple[Path, Any]
) -> None:
    await connect_clickhouse(api, org, store[0])
    response = await api.put(URL, json=clickhouse_body(store[0]), headers=other_org.headers)
    assert response.status_code == 400, response.text
    assert "another organization uses this data directory" in response.text
    # and the other organization's warehouse endpoints stay on its own managed warehouse
    theirs = await api.post(
        f"{URL}/query", json={"sql": "SELECT count(*) FROM purchases"}, headers=other_org.headers
    )
    assert theirs.status_code == 400 and "does not exist" in theirs.json()["error"]["message"]


async def test_queries_previews_and_columns_run_on_clickhouse(
    api: AsyncTestClient[Any], org: Org, store: tuple[Path, Any]
) -> None:
    path, writer = store
    writer.query(
        "INSERT INTO analytics.purchases VALUES ('u1', '2026-01-02 03:04:05.5', 120, false), "
        "('u2', '2026-01-02 03:04:06', 5, true)"
    )
    await connect_clickhouse(api, org, path)
    q = await api.post(
        f"{URL}/query",
        json={"sql": "SELECT user_id, ts, amount FROM purchases ORDER BY user_id -- mine"},
        headers=org.headers,
    )
    assert q.status_code == 200, q.text
    assert q.json()["rows"] == [
        ["u1", "2026-01-02T03:04:05.500000+00:00", 120],
        ["u2", "2026-01-02T03:04:06+00:00", 5],
    ]
    assert [c["type"] for c in q.json()["columns"]] == ["String", "DateTime64(6, 'UTC')", "Float64"]
    binary = await api.post(
        f"{URL}/query", json={"sql": "SELECT unhex('FF41') AS raw, nan AS n"}, headers=org.headers
    )
    assert binary.status_code == 200, binary.text
    assert binary.json()["rows"] == [["\ufffdA", "nan"]]
    await check_purchases_catalog(api, org)
    listed = await api.get(f"{URL}/tables", headers=org.headers)
    assert {t["name"]: t["rows"] for t in listed.json()["tables"]} == {
        "big_orders": None,
        "purchases": 2,
    }
    missing = await api.get(f"{URL}/tables/secrets/columns", headers=org.headers)
    assert missing.status_code == 404


async def test_queries_keep_the_timeout_and_the_row_limit(
    api: AsyncTestClient[Any], org: Org, store: tuple[Path, Any]
) -> None:
    await connect_clickhouse(api, org, store[0])
    api.app.state.sandbox_limits = Limits(timeout_s=0.5)
    slow = await api.post(
        f"{URL}/query",
        json={"sql": "SELECT count() FROM numbers(1000000000000)"},
        headers=org.headers,
    )
    assert slow.status_code == 400, slow.text
    assert "ran past the 0.5 s timeout" in slow.json()["error"]["message"]
    greedy = await api.post(
        f"{URL}/query",
        json={"sql": "SELECT length(groupArray(number)) FROM numbers(2000000000)"},
        headers=org.headers,
    )
    assert greedy.status_code == 400, greedy.text  # max_memory_usage, or the timeout
    assert greedy.json()["error"]["details"]["clickhouse_code"] in (159, 241)
    capped = await api.post(
        f"{URL}/query", json={"sql": "SELECT * FROM numbers(50)", "limit": 7}, headers=org.headers
    )
    assert capped.status_code == 200, capped.text
    assert (capped.json()["row_count"], capped.json()["truncated"]) == (7, True)


async def test_metric_dry_run_and_preview_on_clickhouse(
    api: AsyncTestClient[Any], org: Org, store: tuple[Path, Any]
) -> None:
    path, writer = store
    writer.query("INSERT INTO analytics.purchases VALUES ('u1', now64(6), 12.5, false)")
    writer.query("INSERT INTO analytics.purchases VALUES ('u2', now64(6), 99, true)")
    await connect_clickhouse(api, org, path)
    bad = await post_revenue(api, org, timestamp_col="when")
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["path"] == "$.timestamp_col"
    typed = await post_revenue(api, org, value_col="user_id")
    assert typed.status_code == 400 and "expected a number or a Bool" in typed.text
    broken = await post_revenue(api, org, sql="SELECT nope FROM purchases")
    assert broken.status_code == 400
    assert broken.json()["error"]["details"]["path"] == "$.sql"
    assert await revenue_preview(api, org) == [("u1", 12.5)]


async def test_a_directory_no_longer_allowed_is_unhealthy_not_a_crash(
    db_url: str, api: AsyncTestClient[Any], org: Org, store: tuple[Path, Any], tmp_path: Path
) -> None:
    await connect_clickhouse(api, org, store[0])
    settings = Settings(
        database_url=db_url, log_level="warning", secret_key=SECRET, chdb_root=str(tmp_path)
    )
    async with AsyncTestClient(create_app(settings)) as narrowed:
        status = (await narrowed.get(URL, headers=org.headers)).json()
        assert status["healthy"] is False and "no longer allowed" in status["error"]
        query = await narrowed.post(f"{URL}/query", json={"sql": "SELECT 1"}, headers=org.headers)
        assert query.status_code == 503
        assert query.json()["error"]["code"] == "warehouse_unavailable"


async def test_a_database_dropped_after_connecting_is_unhealthy_not_a_crash(
    api: AsyncTestClient[Any], org: Org, store: tuple[Path, Any]
) -> None:
    path, writer = store
    writer.query("CREATE DATABASE IF NOT EXISTS scratch")
    writer.query("CREATE TABLE scratch.t (x Int8) ENGINE = MergeTree ORDER BY x")
    response = await api.put(
        URL, json=clickhouse_body(path, dataset_id="scratch"), headers=org.headers
    )
    assert response.status_code == 200, response.text
    writer.query("DROP DATABASE scratch")
    status = (await api.get(URL, headers=org.headers)).json()
    assert status["healthy"] is False and "catalog query" in status["error"]
    columns = await api.get(f"{URL}/tables/t/columns", headers=org.headers)
    assert columns.status_code == 503
    assert columns.json()["error"]["code"] == "warehouse_unavailable"


async def test_concurrent_queries_share_the_one_engine(
    api: AsyncTestClient[Any], org: Org, store: tuple[Path, Any]
) -> None:
    """Each request opens its own session on the process's one engine, in worker threads: the
    event loop serves the others meanwhile and every answer is its own."""
    await connect_clickhouse(api, org, store[0])
    answers: dict[int, Any] = {}

    async def ask(i: int) -> None:
        sql = f"SELECT {i} AS i, count() FROM numbers(2000000) WHERE number % 7 = {i % 7}"
        response = await api.post(f"{URL}/query", json={"sql": sql}, headers=org.headers)
        assert response.status_code == 200, response.text
        answers[i] = response.json()["rows"][0]

    async with anyio.create_task_group() as group:
        for i in range(12):
            group.start_soon(ask, i)
    assert {i: row[0] for i, row in answers.items()} == {i: i for i in range(12)}
    assert len({row[1] for row in answers.values()}) == 2  # 285715 or 285714 per residue


async def test_a_second_data_directory_in_the_same_process_is_refused_clearly(
    api: AsyncTestClient[Any], org: Org, store: tuple[Path, Any], conn: asyncpg.Connection
) -> None:
    second = store[0].parent / "second"
    build_in_subprocess(second, [])
    response = await api.put(URL, json=clickhouse_body(second), headers=org.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "warehouse_connection_failed"
    assert "one data directory per process" in response.json()["error"]["message"]
    assert await conn.fetchval("SELECT count(*) FROM warehouse_connections") == 0


async def test_the_write_check_reads_the_engines_own_grants(store: tuple[Path, Any]) -> None:
    """``SHOW GRANTS FINAL`` in Levered's read-only session: chdb's account may do anything,
    so every write privilege it has on the dataset is named. (A connection to chdb is not
    warned about: the in-process engine has no other account to use; a server's is.)"""
    path, _ = store
    target = engine.ClickHouseTarget(f"chdb://{path}", "analytics")
    session = await engine.open_session(target, 5)
    try:
        grants = await ch.account_write_grants(session, "analytics")
    finally:
        await session.aclose()
    first_words = {grant.split(" ", 1)[0] for grant in grants}
    assert {"INSERT", "ALTER", "CREATE", "DROP", "TRUNCATE"} <= first_words, grants
    assert {grant.rsplit(" ON ", 1)[1] for grant in grants} == {"*.*", "*"}, grants  # `*`: named
    # collections, global objects


async def test_a_chdb_connection_is_not_warned_about_writes(
    api: AsyncTestClient[Any], org: Org, store: tuple[Path, Any]
) -> None:
    path, _ = store
    status = await connect_clickhouse(api, org, path)
    assert not any("can write" in w for w in status["warnings"]), status["warnings"]
