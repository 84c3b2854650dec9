"""A port another process serves on is refused at once, naming the port and its holder
(granian binds with SO_REUSEPORT, so a second server used to share the port silently and the
kernel split requests between two databases); ``--workers N`` of one server still shares it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from levered.db.embedded_host import free_port, reachable_tempdir
from tests.conftest import launch_server, stop_server

pytestmark = pytest.mark.slow


def _start(port: int, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERED_")}
    env |= {
        "LEVERED_DATABASE_URL": database_url,
        "LEVERED_DATA_DIR": str(reachable_tempdir("levered-port-")),
        "LEVERED_PORT": str(port),
        "LEVERED_SCHEDULER": "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.app", "server", "start", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def foreign_listener() -> Iterator[int]:
    """A listening socket of this (non-Levered) process that, like granian, set SO_REUSEPORT."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_held_by_another_process_is_refused_naming_port_and_holder(
    foreign_listener: int, migrated_url: str
) -> None:
    done = _start(foreign_listener, migrated_url)
    assert done.returncode != 0
    assert f"port {foreign_listener} is already in use by pid {os.getpid()}" in done.stderr
    assert "serving on http" not in done.stderr + done.stdout


def test_a_second_levered_server_on_the_same_port_is_refused(
    server_url: str, migrated_url: str
) -> None:
    port = int(server_url.rsplit(":", 1)[1])
    done = _start(port, migrated_url)
    assert done.returncode != 0
    assert f"port {port} on 127.0.0.1 is taken: Levered server pid " in done.stderr
    assert "serving on http" not in done.stderr + done.stdout
    assert httpx.get(f"{server_url}/ready").status_code == 200  # the first one is untouched


def test_workers_of_one_server_still_share_its_port(migrated_url: str, tmp_path: Path) -> None:
    port = free_port()
    process = launch_server(migrated_url, port, tmp_path / "server.log", workers="2")
    try:
        statuses = {httpx.get(f"http://127.0.0.1:{port}/ready").status_code for _ in range(20)}
        assert statuses == {200}
        assert "already in use" not in (tmp_path / "server.log").read_text()
    finally:
        stop_server(process)
