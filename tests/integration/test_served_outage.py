"""The durability promise end to end: a server keeps serving a loaded optimization while its
database is down, is killed (SIGKILL) during the outage, and after the database and the server
are back every exposure it acknowledged is stored — once."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import anyio
import httpx
import pytest

from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import free_port
from levered.db.pool import connect
from tests.conftest import launch_server, make_org, stop_server
from tests.integration.test_serving import definition, insert_metric

pytestmark = pytest.mark.slow


async def count_exposures(url: str, opt: str) -> int:
    """Stored exposures of ``opt`` (a new connection: the caller may have no pool)."""
    conn = await connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM warehouse.exposures WHERE optimization_id = $1",
                uuid.UUID(opt),
            )
        )
    finally:
        await conn.close()


def test_exposures_served_during_an_outage_survive_a_crash(
    own_cluster: EmbeddedPostgres,
    tmp_path: Path,
) -> None:
    url = own_cluster.url

    async def setup() -> tuple[dict[str, str], str]:
        conn = await connect(url)
        try:
            org = await make_org(conn, f"Outage {uuid.uuid4().hex[:8]}")
            return org.headers, str(await insert_metric(conn, org))
        finally:
            await conn.close()

    headers, metric = anyio.run(setup)
    port = free_port()
    data_dir = tmp_path / "data"
    log = tmp_path / "server.log"
    server = launch_server(url, port, log, serve_rate_limit="0", data_dir=str(data_dir))
    base = f"http://127.0.0.1:{port}/api/v2/optimizations"
    try:
        with httpx.Client(timeout=30) as http:
            body = definition(uuid.UUID(metric), sticky=False)
            opt = http.post(base, json=body, headers=headers).json()["id"]
            assert http.post(f"{base}/{opt}/serve", json={"anonymous_id": "a"}).status_code == 200
            deadline = time.monotonic() + 10
            while anyio.run(count_exposures, url, opt) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            own_cluster.stop()  # the outage
            during = [
                http.post(f"{base}/{opt}/serve", json={"anonymous_id": f"u{i}"}) for i in range(40)
            ]
            assert [r.status_code for r in during] == [200] * 40
            deadline = time.monotonic() + 10
            while "spooled" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
        server.send_signal(signal.SIGKILL)  # no shutdown flush: only the spool can save them
        server.wait(30)
    finally:
        if server.poll() is None:
            stop_server(server)
    assert "spooled" in log.read_text()
    own_cluster.start()
    server = launch_server(url, port, log, data_dir=str(data_dir))
    try:
        deadline = time.monotonic() + 20
        while anyio.run(count_exposures, url, opt) < 41 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert anyio.run(count_exposures, url, opt) == 41
    finally:
        stop_server(server)
    assert anyio.run(count_exposures, url, opt) == 41
