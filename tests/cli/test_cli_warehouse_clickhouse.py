"""``levered warehouse connect clickhouse``, ``status`` and ``query`` against a real server
process whose ``LEVERED_CHDB_ROOT`` holds a chdb store (built by a child process: chdb runs one
engine per process, and the server's is its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from levered.db.embedded_host import free_port, reachable_tempdir
from tests.cli.conftest import levered
from tests.clickhouse_store import build_in_subprocess
from tests.conftest import Org, launch_server, stop_server


@pytest.fixture
def chdb_server(migrated_url: str) -> Iterator[tuple[str, Path]]:
    root = reachable_tempdir("levered-cli-chdb-")
    store = root / "shop"
    build_in_subprocess(store, [("u1", "2026-01-01 00:00:00", 10.0), ("u2", "2026-01-02", 3.5)])
    port = free_port()
    process = launch_server(migrated_url, port, root / "server.log", chdb_root=str(root))
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        stop_server(process)


async def test_connect_clickhouse_status_query_and_back(
    cli_env: dict[str, str],
    chdb_server: tuple[str, Path],
    org: Org,
    conn: asyncpg.Connection,
) -> None:
    server, store = chdb_server
    env = cli_env | {"LEVERED_API_KEY": org.api_key, "LEVERED_API_URL": server}
    missing = await levered("warehouse", "connect", "clickhouse", "--url", "chdb:///x", env=env)
    assert missing.code == 2 and "--database" in missing.stderr

    outside = await levered(
        "warehouse", "connect", "clickhouse", "--url", "chdb:///etc", "--database", "x", env=env
    )
    assert outside.code != 0 and "LEVERED_CHDB_ROOT" in outside.stderr
    assert await conn.fetchval("SELECT count(*) FROM warehouse_connections") == 0

    args = ["warehouse", "connect", "clickhouse", "--url", f"chdb://{store}"]
    done = await levered(*args, "--database", "analytics", "--json", env=env)
    assert done.code == 0, done.stderr
    assert done.json()["provider"] == "clickhouse" and done.json()["healthy"] is True

    status = await levered("warehouse", "status", env=env)
    assert status.code == 0, status.stderr
    assert f"connected: chdb://{store}  database: analytics" in status.stderr
    assert "purchases" in status.stdout
    as_json = await levered("warehouse", "status", "--json", env=env)
    assert as_json.json()["connection"]["url"] == f"chdb://{store}"

    query = await levered(
        "warehouse", "query", "SELECT sum(amount) AS total FROM purchases", "--json", env=env
    )
    assert query.code == 0, query.stderr
    assert query.json()["rows"] == [[13.5]]
    escape = await levered("warehouse", "query", "SELECT file('/etc/passwd')", env=env)
    assert escape.code != 0 and "not allowed" in escape.stderr
    assert "root:x:0:0" not in escape.stdout + escape.stderr

    back = await levered("warehouse", "connect", "managed", "--json", env=env)
    assert back.code == 0 and back.json()["provider"] == "managed"
