"""Shared fixtures: one real PostgreSQL per test session, a clean database per test.

The server is started by the same launcher the product uses (fsync off). When
``LEVERED_TEST_DATABASE_URL`` is set, that server is used instead (its database is wiped).
Isolation: every test starts from truncated tables (≈ 4 ms), never from mocks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from levered.db import migrations
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import free_port, reachable_tempdir, scratch_dir
from levered.db.pool import connect
from levered.server.app import create_app
from levered.services.passwords import hash_password
from levered.services.tokens import digest, new_api_key
from levered.settings import Settings
from tests.customer import customer_cluster


@pytest.fixture(scope="session", autouse=True)
def session_tempdir() -> Iterator[Path]:
    """Every temporary directory of the session (clusters, servers' data directories, logs)
    inside one that is removed at its end: runs no longer pile up in the temp directory."""
    with scratch_dir("levered-tests-") as root:
        before = tempfile.tempdir
        tempfile.tempdir = str(root)
        try:
            yield root
        finally:
            tempfile.tempdir = before


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Every ``async def`` test runs on asyncio (``anyio_mode = "auto"`` in pyproject)."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    external = os.environ.get("LEVERED_TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(reachable_tempdir("levered-test-") / "data", durable=False)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def migrated_url(postgres_url: str) -> str:
    import anyio

    async def setup() -> None:
        conn = await connect(postgres_url)
        try:
            await conn.execute(
                "DROP SCHEMA IF EXISTS warehouse CASCADE; "
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
            )
            await migrations.migrate(conn)
        finally:
            await conn.close()

    anyio.run(setup)
    return postgres_url


TRUNCATE_ALL = """
DO $$ DECLARE names text; BEGIN
  SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') INTO names
  FROM pg_tables WHERE schemaname IN ('public', 'warehouse') AND tablename <> 'schema_migrations';
  EXECUTE 'TRUNCATE ' || names || ' CASCADE';
END $$
"""


@pytest.fixture(scope="session")
def customer() -> Iterator[str]:
    """A second PostgreSQL cluster playing a customer's own database (tests/customer.py), for
    connected-warehouse tests; started on first use only."""
    with customer_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def chdb_store() -> Iterator[tuple[Path, Any]]:
    """The customer's ClickHouse (tests/clickhouse_store.py): a chdb data directory under its
    root, and the customer's own writable connection to it. One per session: chdb runs one
    engine per process, on one directory."""
    from tests.clickhouse_store import build

    root = reachable_tempdir("levered-chdb-")
    writer = build(root / "shop")
    try:
        yield root / "shop", writer
    finally:
        writer.close()


@pytest.fixture
async def shop(customer: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the customer's database, its purchases and exposures
    emptied."""
    conn = await asyncpg.connect(customer)
    await conn.execute("TRUNCATE analytics.purchases, analytics.app_exposures")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def store(chdb_store: tuple[Path, Any]) -> tuple[Path, Any]:
    """The session's ClickHouse store, its purchases emptied."""
    path, writer = chdb_store
    writer.query("TRUNCATE TABLE analytics.purchases")
    return path, writer


@pytest.fixture
async def empty_url(postgres_url: str) -> AsyncIterator[str]:
    """A brand-new database on the session server, dropped afterwards (migration tests)."""
    name = f"mig_{uuid.uuid4().hex[:10]}"
    admin = await connect(postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def db_url(migrated_url: str) -> str:
    """The migrated database, emptied before this test. The session's server may still be
    writing (a serve buffer's flush locks exposures, then optimizations), so a deadlock with it
    is retried: PostgreSQL aborted one of the two, and the flush retries on its own."""
    conn = await connect(migrated_url)
    try:
        for attempt in range(5):
            try:
                await conn.execute(TRUNCATE_ALL)
                break
            except asyncpg.DeadlockDetectedError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return migrated_url


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(db_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, pool_min_size=1, pool_max_size=5, log_level="warning")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(settings)) as test_client:
        yield test_client


@dataclass(frozen=True)
class Org:
    """A tenant made for a test: its id, an API key, and a user (its admin) with a known
    password."""

    id: UUID
    api_key: str
    api_key_id: UUID
    user_id: UUID
    email: str
    password: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def make_org(conn: asyncpg.Connection, name: str) -> Org:
    org_id = await conn.fetchval("INSERT INTO organizations (name) VALUES ($1) RETURNING id", name)
    password = f"pw-{name}-secret"
    email = f"{name.lower().replace(' ', '-')}@example.test"
    user_id = await conn.fetchval(
        "INSERT INTO users (organization_id, email, name, password_hash) "
        "VALUES ($1, $2, $3, $4) RETURNING id",
        org_id,
        email,
        name,
        hash_password(password),
    )
    await conn.execute(
        "INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'admin')",
        org_id,
        user_id,
    )
    key, prefix = new_api_key()
    key_id = await conn.fetchval(
        "INSERT INTO api_keys (organization_id, label, prefix, secret_hash) "
        "VALUES ($1, 'test', $2, $3) RETURNING id",
        org_id,
        prefix,
        digest(key),
    )
    return Org(org_id, key, key_id, user_id, email, password)


SIGNUP_SQL = "SELECT anonymous_id, timestamp FROM rewards WHERE name = 'signup'"


async def make_metric(conn: asyncpg.Connection, org: Org, sql: str = SIGNUP_SQL) -> UUID:
    """A bool metric stored directly (no dry run): tests that need one but not the sandbox."""
    metric_id: UUID = await conn.fetchval(
        "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
        "reward_type) VALUES ($1, 'Sign-ups', $2, 'anonymous_id', 'timestamp', 'bool') "
        "RETURNING id",
        org.id,
        sql,
    )
    return metric_id


@pytest.fixture
async def org(conn: asyncpg.Connection) -> Org:
    return await make_org(conn, "Acme")


@pytest.fixture
async def other_org(conn: asyncpg.Connection) -> Org:
    """The attacker's (or bystander's) organization for tenancy tests."""
    return await make_org(conn, "Globex")


def launch_server(
    database_url: str, port: int, log: Path, **settings: str
) -> subprocess.Popen[bytes]:
    """Start `levered server start` on ``port`` against ``database_url`` and wait until ready.

    The scheduler is off: tests train explicitly, so no background training races them.
    ``settings`` are more ``LEVERED_*`` variables (``workers="2"``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERED_")}
    env |= {
        "LEVERED_DATABASE_URL": database_url,
        "LEVERED_PORT": str(port),
        "LEVERED_DATA_DIR": str(reachable_tempdir("levered-srv-")),
        "LEVERED_LOG_LEVEL": "warning",
        "LEVERED_SCHEDULER": "false",
    } | {f"LEVERED_{name.upper()}": value for name, value in settings.items()}
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.app", "server", "start"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"server not ready:\n{log.read_text()}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(60)


@pytest.fixture(scope="session")
def server_url(migrated_url: str) -> Iterator[str]:
    """A real `levered server start` process on loopback, on the session's test database
    (tests that need their own event loop or a separate process, like the CLI and TUI)."""
    port = free_port()
    process = launch_server(migrated_url, port, reachable_tempdir("levered-log-") / "server.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)


def cluster_pids(pgdata: Path) -> list[int]:
    """The postmaster and its children (backends, checkpointer, WAL writer, …), from /proc."""
    master = int((pgdata / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path("/proc", entry, "status").read_text()
        except OSError:
            continue
        ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        if int(ppid) == master:
            children.append(int(entry))
    return [master, *children]


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test alone (the session's must not be frozen)."""
    server = EmbeddedPostgres(reachable_tempdir("levered-frozen-") / "data", durable=False)
    url = server.start()

    async def migrate() -> None:
        conn = await connect(url)
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()

    anyio.run(migrate)
    try:
        yield server
    finally:
        if (server.pgdata / "postmaster.pid").exists():
            for pid in cluster_pids(server.pgdata):
                os.kill(pid, signal.SIGCONT)
        server.stop()
