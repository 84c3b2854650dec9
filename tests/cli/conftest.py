"""CLI tests run the real ``levered`` command in a subprocess against a real server process
on loopback, backed by the session's test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest

from levered.db.embedded import free_port, reachable_tempdir


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return msgspec.json.decode(self.stdout)


@pytest.fixture(scope="session")
def server_url(migrated_url: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERED_")}
    env |= {
        "LEVERED_DATABASE_URL": migrated_url,
        "LEVERED_PORT": str(port),
        "LEVERED_DATA_DIR": str(reachable_tempdir("levered-cli-")),
        "LEVERED_LOG_LEVEL": "warning",
    }
    log = Path(reachable_tempdir("levered-cli-log-")) / "server.log"
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
                break
        except httpx.TransportError:
            time.sleep(0.2)
        assert process.poll() is None, log.read_text()
    try:
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


@pytest.fixture
def cli_env(server_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERED_")}
    return env | {"LEVERED_API_URL": server_url, "LEVERED_CONFIG_DIR": str(tmp_path / "cfg")}


async def levered(*args: str, env: dict[str, str], stdin: str | None = None) -> Result:
    """Run ``levered ARGS`` and capture its exit code, stdout and stderr."""
    done = await anyio.run_process(
        [sys.executable, "-m", "cli.app", *args],
        env=env,
        input=stdin.encode() if stdin is not None else b"",
        check=False,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())
