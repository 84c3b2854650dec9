"""The ingestion SDK against a real server that is stopped and restarted while it sends:
every event arrives exactly once."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import anyio
import pytest

from levered.client import Ingestor
from levered.db.embedded_host import free_port
from levered.db.pool import connect
from tests.conftest import Org, launch_server, make_org, stop_server

pytestmark = pytest.mark.slow
EVENTS = 3000


def test_events_survive_a_server_restart_exactly_once(migrated_url: str, tmp_path: Path) -> None:
    async def setup() -> Org:
        conn = await connect(migrated_url)
        try:
            return await make_org(conn, f"Restart {uuid.uuid4().hex[:8]}")
        finally:
            await conn.close()

    org = anyio.run(setup)
    port = free_port()
    log = tmp_path / "server.log"
    server = launch_server(migrated_url, port, log)
    sender = Ingestor(
        f"http://127.0.0.1:{port}",
        org.api_key,
        batch_size=100,
        flush_interval=0.05,
        max_backoff=1.0,
    )
    sent = threading.Event()

    def send() -> None:
        for i in range(EVENTS):
            sender.track_reward(f"user-{i}", "signup", value=float(i))
            if i % 100 == 0:
                time.sleep(0.02)
        sent.set()

    producer = threading.Thread(target=send)
    producer.start()
    try:
        time.sleep(0.5)  # mid-stream
        stop_server(server)
        time.sleep(1.0)  # the SDK meets connection errors and backs off
        server = launch_server(migrated_url, port, log)
        producer.join(60)
        assert sent.is_set()
        sender.close(timeout=60)
    finally:
        stop_server(server)

    async def stored() -> tuple[int, int]:
        conn = await connect(migrated_url)
        try:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, count(DISTINCT anonymous_id) AS users "
                "FROM warehouse.rewards WHERE organization_id = $1",
                org.id,
            )
            assert row is not None
            return int(row["n"]), int(row["users"])
        finally:
            await conn.close()

    assert anyio.run(stored) == (EVENTS, EVENTS)
    assert sender.stats.failed == 0 and sender.stats.dropped == 0
    assert sender.stats.retries > 0, "the restart should have forced retries"
