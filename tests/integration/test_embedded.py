"""The embedded PostgreSQL launcher: first start, restart, stale pid, reuse, root handling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import RunAs, reachable_tempdir
from levered.errors import ConfigurationError

pytestmark = pytest.mark.slow


def _query(url: str, sql: str) -> str:
    import anyio

    from levered.db.pool import connect

    async def run() -> str:
        conn = await connect(url)
        try:
            return str(await conn.fetchval(sql))
        finally:
            await conn.close()

    return anyio.run(run)


def test_first_start_then_restart_keeps_data() -> None:
    data = reachable_tempdir("levered-emb-") / "data"
    server = EmbeddedPostgres(data, durable=False)
    url = server.start()
    try:
        assert (data / "pgdata" / "PG_VERSION").exists()
        assert oct((data / "superuser-password").stat().st_mode & 0o777) == "0o600"
        _query(url, "CREATE TABLE kept (x int)")
    finally:
        server.stop()
    assert server._process is None
    again = EmbeddedPostgres(data, durable=False)
    url2 = again.start()
    try:
        assert _query(url2, "SELECT to_regclass('kept') IS NOT NULL") == "True"
        assert again.owned
        assert again.port == server.port  # the last port is kept while it is free
    finally:
        again.stop()


def test_stale_postmaster_pid_from_a_crash_is_recovered() -> None:
    data = reachable_tempdir("levered-emb-") / "data"
    server = EmbeddedPostgres(data, durable=False)
    server.start()
    assert server._process is not None
    pid = server._process.pid
    os.kill(pid, signal.SIGKILL)  # a crash: postmaster.pid stays behind
    server._process.wait()
    server._process = None
    assert (data / "pgdata" / "postmaster.pid").exists()
    restarted = EmbeddedPostgres(data, durable=False)
    url = restarted.start()
    try:
        assert _query(url, "SELECT 1") == "1"
    finally:
        restarted.stop()


def test_a_running_server_is_reused_and_left_running() -> None:
    data = reachable_tempdir("levered-emb-") / "data"
    first = EmbeddedPostgres(data, durable=False)
    first.start()
    try:
        second = EmbeddedPostgres(data, durable=False)
        second.start()
        assert second.port == first.port and not second.owned
        second.stop()
        assert _query(first.url, "SELECT 1") == "1"
    finally:
        first.stop()


def test_stop_terminates_postgres() -> None:
    data = reachable_tempdir("levered-emb-") / "data"
    server = EmbeddedPostgres(data, durable=False)
    server.start()
    process = server._process
    assert process is not None
    server.stop()
    assert process.poll() is not None
    assert not (data / "pgdata" / "postmaster.pid").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_killed_parent_takes_its_postgres_down() -> None:
    """SIGKILL runs no atexit hook: the kernel's parent-death signal must stop postgres."""
    data = reachable_tempdir("levered-emb-") / "data"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from levered.db.embedded import EmbeddedPostgres\n"
        "server = EmbeddedPostgres(Path(sys.argv[1]), durable=False)\n"
        "server.start()\n"
        "print(server._process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(data)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    postgres = int(parent.stdout.readline())
    os.kill(postgres, 0)  # running
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(postgres):
        time.sleep(0.1)
    if _alive(postgres):
        os.kill(postgres, signal.SIGQUIT)  # do not leave it behind
        pytest.fail("postgres outlived the process that started it")
    assert not (data / "pgdata" / "postmaster.pid").exists()  # a clean (fast) shutdown


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.skipif(os.geteuid() != 0, reason="root-only behaviour; CI runs as root")
def test_as_root_postgres_runs_unprivileged() -> None:
    data = reachable_tempdir("levered-emb-") / "data"
    server = EmbeddedPostgres(data, durable=False)
    server.start()
    try:
        assert server._process is not None
        owner = RunAs.pick()
        assert (data / "pgdata").stat().st_uid == owner.uid != 0
        status = Path(f"/proc/{server._process.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert int(uid_line.split()[1]) == owner.uid
    finally:
        server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="root-only behaviour; CI runs as root")
def test_as_root_an_unreachable_data_dir_says_what_to_do() -> None:
    base = reachable_tempdir("levered-emb-")
    private = base / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ConfigurationError) as caught:
        EmbeddedPostgres(private / "data").start()
    message = str(caught.value)
    assert str(private) in message and "LEVERED_DATA_DIR" in message
    assert not (private / "data" / "pgdata").exists()


def test_initdb_failure_is_reported_cleanly(tmp_path: Path) -> None:
    data = reachable_tempdir("levered-emb-") / "data"
    data.mkdir()
    (data / "pgdata").mkdir()  # a half-done initdb: no PG_VERSION; must be redone, not fail
    server = EmbeddedPostgres(data, durable=False)
    try:
        server.start()
        assert (data / "pgdata" / "PG_VERSION").exists()
    finally:
        server.stop()
    assert subprocess.run(["true"]).returncode == 0
