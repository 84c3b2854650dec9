"""CLI tests run the real ``levered`` command in a subprocess against a real server process
on loopback (``server_url``, from tests/conftest.py), backed by the session's test database."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout decoded: tests index into it, and a wrong shape fails them at run time."""
        return msgspec.json.decode(self.stdout)


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
