"""A worker whose launcher was killed (SIGKILL: no chance to stop its children) stops by itself
— within seconds, freeing the port — and, stopping as on SIGTERM, stores the exposures it had
acknowledged."""

from __future__ import annotations

import signal
import socket
import uuid
from pathlib import Path

import anyio
import httpx
import psutil

from levered.db.embedded_host import free_port
from levered.db.pool import connect
from tests.conftest import launch_server, make_org
from tests.integration.test_served_outage import count_exposures
from tests.integration.test_serving import definition, insert_metric


async def _setup(url: str) -> tuple[dict[str, str], uuid.UUID]:
    conn = await connect(url)
    try:
        org = await make_org(conn, f"Orphans {uuid.uuid4().hex[:8]}")
        return org.headers, await insert_metric(conn, org)
    finally:
        await conn.close()


def test_workers_of_a_killed_launcher_stop_and_keep_what_they_served(
    migrated_url: str, tmp_path: Path
) -> None:
    headers, metric = anyio.run(_setup, migrated_url)
    port = free_port()
    log = tmp_path / "server.log"
    server = launch_server(migrated_url, port, log, serve_rate_limit="0")
    workers = psutil.Process(server.pid).children()
    assert workers, "the launcher runs its workers as child processes"
    base = f"http://127.0.0.1:{port}/api/v2/optimizations"
    with httpx.Client(timeout=30) as http:
        opt = http.post(base, json=definition(metric, sticky=False), headers=headers).json()["id"]
        served = [
            http.post(f"{base}/{opt}/serve", json={"anonymous_id": f"u{i}"}) for i in range(25)
        ]
    assert [r.status_code for r in served] == [200] * 25

    server.send_signal(signal.SIGKILL)
    server.wait(10)
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"workers outlived their launcher:\n{log.read_text()}"
    assert "is gone: this worker shuts down" in log.read_text()
    with socket.socket() as probe:  # nothing listens on the port any more
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    # Every acknowledged serve's exposure is stored: the worker flushed its buffer on the way out.
    assert anyio.run(count_exposures, migrated_url, opt) == 25
