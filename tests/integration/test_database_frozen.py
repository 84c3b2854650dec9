"""A hung database (every PostgreSQL process stopped with SIGSTOP) under a running server:
ingestion and serves that need the database answer 503 + ``Retry-After`` within their bound
instead of waiting until the client gives up; a sticky user this process already knows is
served without the database at all (with a key: one checked in the last minute); everything
works again once PostgreSQL resumes."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import anyio
import httpx
import pytest

from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import free_port
from levered.db.pool import connect
from tests.conftest import Org, cluster_pids, launch_server, make_org, stop_server
from tests.integration.test_serving import definition, insert_metric

pytestmark = pytest.mark.slow
PATIENT = 30.0  # the client's own patience: far beyond the server's bound (5 s twice at most)


def test_a_frozen_database_gets_503_with_retry_after_not_a_hang(
    own_cluster: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = own_cluster.url

    async def setup() -> tuple[Org, str]:
        conn = await connect(url)
        try:
            org = await make_org(conn, f"Frozen {uuid.uuid4().hex[:8]}")
            metric = await insert_metric(conn, org)
            return org, str(metric)
        finally:
            await conn.close()

    org, metric = anyio.run(setup)
    port = free_port()
    server = launch_server(url, port, tmp_path / "server.log", serve_rate_limit="0")
    base = f"http://127.0.0.1:{port}/api/v2"
    try:
        with httpx.Client(base_url=base, timeout=PATIENT) as http:
            created = http.post(
                "/optimizations", json=definition(uuid.UUID(metric)), headers=org.headers
            )
            assert created.status_code == 201, created.text
            opt = created.json()["id"]
            first = http.post(f"/optimizations/{opt}/serve", json={"anonymous_id": "known"})
            assert first.status_code == 200, first.text
            keyed = http.post(
                f"/optimizations/{opt}/serve", json={"anonymous_id": "known"}, headers=org.headers
            )
            assert keyed.status_code == 200, keyed.text  # the key was checked just now
            exposure = {
                "anonymous_id": "u1",
                "optimization_id": opt,
                "variant": first.json()["variant"],
            }

            pids = cluster_pids(own_cluster.pgdata)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                again = http.post(f"/optimizations/{opt}/serve", json={"anonymous_id": "known"})
                assert again.status_code == 200, again.text
                assert again.json()["variant"] == first.json()["variant"]
                # A key checked a moment ago still serves; one never checked cannot.
                for _ in range(2):
                    with_key = http.post(
                        f"/optimizations/{opt}/serve",
                        json={"anonymous_id": "known"},
                        headers=org.headers,
                    )
                    assert with_key.status_code == 200, with_key.text
                unknown = http.post(
                    f"/optimizations/{opt}/serve",
                    json={"anonymous_id": "known"},
                    headers={"x-api-key": "lvk_abcd1234_" + "s" * 40},  # well formed
                )
                assert unknown.status_code == 503, unknown.text

                for response in (
                    http.post(f"/optimizations/{opt}/serve", json={"anonymous_id": "new"}),
                    http.post(
                        "/ingest/exposures", json={"events": [exposure]}, headers=org.headers
                    ),
                ):
                    assert response.status_code == 503, response.text
                    assert int(response.headers["retry-after"]) >= 1
                    error = response.json()["error"]
                    assert error["code"] == "unavailable"
                    assert error["details"]["cause"] == "database_timeout"
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)

            stored = http.post(
                "/ingest/exposures", json={"events": [exposure]}, headers=org.headers
            )
            assert stored.status_code == 200, stored.text
            new = http.post(f"/optimizations/{opt}/serve", json={"anonymous_id": "new"})
            assert new.status_code == 200, new.text
    finally:
        stop_server(server)
