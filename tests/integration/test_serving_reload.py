"""Hot reload across processes: two real ``levered server start`` processes on one database see
a status change and a new model version within about a second, without a restart, and keep
doing so after their LISTEN connection is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import anyio
import asyncpg
import httpx
import pytest

from levered.db.embedded_host import free_port, reachable_tempdir
from levered.services.serving_state import LISTENER_NAME
from tests.conftest import Org
from tests.integration.test_serving import definition, insert_metric, mab_preferring, train

pytestmark = pytest.mark.slow

REACH_WITHIN_S = 2.0
"""The promise is "about a second"; the bound leaves room for a loaded 2-core test machine."""


def start_server(database_url: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERED_")}
    env |= {
        "LEVERED_DATABASE_URL": database_url,
        "LEVERED_PORT": str(port),
        "LEVERED_DATA_DIR": str(reachable_tempdir("levered-serve-")),
        "LEVERED_LOG_LEVEL": "warning",
    }
    log = Path(reachable_tempdir("levered-serve-log-")) / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.app", "server", "start"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return process, url, log
        except httpx.TransportError:
            time.sleep(0.2)
        assert process.poll() is None, log.read_text()
    process.kill()
    raise AssertionError(f"second server did not start: {log.read_text()}")


@pytest.fixture(scope="module")
def second_server_url(migrated_url: str) -> Iterator[str]:
    process, url, _ = start_server(migrated_url)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


@pytest.fixture
def servers(server_url: str, second_server_url: str) -> list[str]:
    return [server_url, second_server_url]


async def serve(http: httpx.AsyncClient, url: str, optimization_id: str) -> dict[str, Any]:
    response = await http.post(
        f"{url}/api/v2/optimizations/{optimization_id}/serve",
        json={"anonymous_id": str(uuid4()), "dry_run": True},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def seen_by_all(
    http: httpx.AsyncClient, servers: list[str], optimization_id: str, check: Any
) -> float:
    """Seconds until every server's serve satisfies ``check`` (fails after the bound)."""
    began = time.monotonic()
    pending = set(servers)
    while pending:
        for url in list(pending):
            if check(await serve(http, url, optimization_id)):
                pending.discard(url)
        elapsed = time.monotonic() - began
        assert elapsed < REACH_WITHIN_S, f"not reloaded by {sorted(pending)} in {elapsed:.2f} s"
        await anyio.sleep(0.02)
    return time.monotonic() - began


async def create(http: httpx.AsyncClient, url: str, conn: asyncpg.Connection, org: Org) -> str:
    metric = await insert_metric(conn, org)
    response = await http.post(
        f"{url}/api/v2/optimizations", json=definition(metric), headers=org.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_status_change_reaches_both_processes(
    servers: list[str], conn: asyncpg.Connection, org: Org
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        opt = await create(http, servers[0], conn, org)
        for url in servers:  # both processes have it cached now
            assert (await serve(http, url, opt))["model_version"] is None
        response = await http.patch(
            f"{servers[0]}/api/v2/optimizations/{opt}",
            json={"status": "paused"},
            headers=org.headers,
        )
        assert response.status_code == 200, response.text
        took = await seen_by_all(
            http, servers, opt, lambda b: b["variant_number"] == 1 and b["propensity"] == 1.0
        )
        assert took < REACH_WITHIN_S
        await conn.execute("UPDATE optimizations SET status = 'archived' WHERE id = $1", UUID(opt))
        began = time.monotonic()
        for url in servers:
            while True:
                response = await http.post(f"{url}/api/v2/optimizations/{opt}/serve", json={})
                if response.status_code == 409:
                    break
                assert time.monotonic() - began < REACH_WITHIN_S
                await anyio.sleep(0.02)


async def test_a_new_model_version_reaches_both_processes_without_restart(
    servers: list[str], conn: asyncpg.Connection, org: Org
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        opt = await create(http, servers[0], conn, org)
        await conn.execute("UPDATE optimizations SET status = 'shipped' WHERE id = $1", UUID(opt))
        await seen_by_all(http, servers, opt, lambda b: b["variant_number"] == 1)
        await train(conn, opt, mab_preferring(3), version=1)
        await seen_by_all(
            http, servers, opt, lambda b: (b["variant_number"], b["model_version"]) == (3, 1)
        )
        await train(conn, opt, mab_preferring(8), version=2)
        took = await seen_by_all(
            http, servers, opt, lambda b: (b["variant_number"], b["model_version"]) == (8, 2)
        )
        assert took < REACH_WITHIN_S


async def test_reloads_continue_after_the_listen_connection_is_killed(
    servers: list[str], conn: asyncpg.Connection, org: Org
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        opt = await create(http, servers[0], conn, org)
        await conn.execute("UPDATE optimizations SET status = 'shipped' WHERE id = $1", UUID(opt))
        await train(conn, opt, mab_preferring(5), version=1)
        await seen_by_all(http, servers, opt, lambda b: b["variant_number"] == 5)
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            LISTENER_NAME,
        )
        assert killed >= 2  # one listener per server process
        await anyio.sleep(0.5)  # reconnect (backoff starts at 0.1 s)
        await train(conn, opt, mab_preferring(9), version=2)
        await seen_by_all(
            http, servers, opt, lambda b: (b["variant_number"], b["model_version"]) == (9, 2)
        )
