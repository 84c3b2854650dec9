"""Start ``levered server start`` (the production launcher) for a benchmark and wait for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

# The serve endpoint's per-client rate limit, lifted: a load generator is one client.
UNLIMITED_SERVES = {
    "LEVERED_SERVE_RATE_LIMIT": "1000000000",
    "LEVERED_SERVE_RATE_BURST": "1000000000",
}


def start_levered(
    database_url: str,
    port: int,
    *,
    asgi: str = "granian",
    loop: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The server on ``port`` against ``database_url``, ready (``/ready`` answered 200);
    ``loop`` None is the server's default; ``env`` adds or overrides ``LEVERED_*`` settings.
    Exits the benchmark after 60 s."""
    settings = {
        "LEVERED_DATABASE_URL": database_url,
        "LEVERED_PORT": str(port),
        "LEVERED_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.app", "server", "start", "--asgi", asgi]
        + (["--loop", loop] if loop else []),
        env=dict(os.environ) | settings | (env or {}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server ({asgi}) did not become ready within 60 s")
