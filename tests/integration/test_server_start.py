"""`levered server start` as a user runs it: embedded database, first-start credentials,
Ctrl-C and SIGTERM stop the server and its PostgreSQL, a restart reuses the data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from levered.db.embedded_host import free_port, reachable_tempdir

pytestmark = pytest.mark.slow


def _start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERED_")}
    env |= {"LEVERED_DATA_DIR": str(data_dir), "LEVERED_PORT": str(port)}
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.app", "server", "start"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> httpx.Response:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready:\n{log.read_text()}")


def _postmaster_pid(data_dir: Path) -> int | None:
    pidfile = data_dir / "pgdata" / "postmaster.pid"
    return int(pidfile.read_text().split()[0]) if pidfile.exists() else None


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    process.send_signal(sig)
    return process.wait(60)


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_start_stop_restart(tmp_path: Path) -> None:
    data_dir = reachable_tempdir("levered-srv-") / "data"
    port = free_port()
    first_log = tmp_path / "first.log"
    server = _start(data_dir, port, first_log)
    try:
        assert _wait_ready(server, port, first_log).json()["migrations"] == "current"
        pg_pid = _postmaster_pid(data_dir)
        assert pg_pid is not None
    finally:
        _stop(server, signal.SIGINT)
    output = first_log.read_text()
    credentials = data_dir / "initial-credentials"
    assert str(credentials) in output and "First start" in output
    assert oct(credentials.stat().st_mode & 0o777) == "0o600"
    assert "api_key=lvk_" in credentials.read_text()
    assert _gone(pg_pid), "Ctrl-C must stop the embedded PostgreSQL too"

    second_log = tmp_path / "second.log"
    again = _start(data_dir, port, second_log)
    try:
        _wait_ready(again, port, second_log)
        pg_pid = _postmaster_pid(data_dir)
        assert pg_pid is not None
    finally:
        _stop(again, signal.SIGTERM)
    assert "First start" not in second_log.read_text()
    assert "api_key=lvk_" in credentials.read_text()  # untouched
    assert _gone(pg_pid), "SIGTERM must stop the embedded PostgreSQL too"


def test_loop_uvloop_without_uvloop_is_a_usage_error_and_starts_nothing(tmp_path: Path) -> None:
    """Where uvloop cannot be imported (Windows), ``--loop uvloop`` says so before any database
    is started; left out, the loop falls back to asyncio's own."""
    hide_uvloop = (
        "import sys; sys.modules['uvloop'] = None; "
        "from levered.server.run import default_loop; print(default_loop()); "
        "sys.argv = ['levered', 'server', 'start', '--loop', 'uvloop']; "
        "from cli.app import main; main()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERED_")}
    env["LEVERED_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-c", hide_uvloop], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip() == "asyncio"
    assert "--loop uvloop: uvloop is not installed" in done.stderr
    assert not (tmp_path / "data").exists()  # no embedded PostgreSQL was created


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["stopped", "killed"])
def test_the_server_starts_its_postgresql_again_when_it_exits(
    tmp_path: Path, how: signal.Signals
) -> None:
    """PostgreSQL stopped (``pg_ctl stop -m fast`` is SIGINT) or killed under a running
    server: the server starts it again on the same port and says so; /ready is 200 again."""
    data_dir = reachable_tempdir("levered-srv-") / "data"
    port = free_port()
    log = tmp_path / "server.log"
    server = _start(data_dir, port, log)
    try:
        _wait_ready(server, port, log)
        first = _postmaster_pid(data_dir)
        assert first is not None
        os.kill(first, how)
        assert _gone(first)
        _wait_ready(server, port, log)  # fails after 90 s if nobody starts it again
        second = _postmaster_pid(data_dir)
        assert second is not None and second != first
        assert "embedded PostgreSQL exited" in log.read_text()
        # /ready may answer before the supervisor's thread has logged that the restart is done
        deadline = time.monotonic() + 30
        while "running again" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "running again" in log.read_text()
    finally:
        _stop(server, signal.SIGINT)
    assert second is not None and _gone(second), "Ctrl-C still stops the restarted PostgreSQL"


def test_levered_server_stop_stops_it_like_ctrl_c(tmp_path: Path) -> None:
    data_dir = reachable_tempdir("levered-srv-") / "data"
    port = free_port()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERED_")}

    def stop_command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.app", "server", "stop", "--port", str(port), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )

    nothing = stop_command()
    assert nothing.returncode == 1 and f"no Levered server is running on 127.0.0.1:{port}" in (
        nothing.stderr
    )
    server = _start(data_dir, port, log)
    try:
        _wait_ready(server, port, log)
        pg_pid = _postmaster_pid(data_dir)
        assert pg_pid is not None
        stopped = stop_command("--json")
        assert stopped.returncode == 0, stopped.stderr
        assert '"stopped": true' in stopped.stdout and str(server.pid) in stopped.stdout
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            _stop(server, signal.SIGKILL)
    assert _gone(pg_pid), "server stop must stop the embedded PostgreSQL too"
