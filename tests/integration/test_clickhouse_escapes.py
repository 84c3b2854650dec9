"""From the attacker's side: tenant SQL on a connected chdb must not leave its database.

Two layers, each tested on its own. The engine's ``readonly = 1`` session (what Levered opens)
refuses writes, DDL, ``SET``/``SETTINGS`` and the table functions that reach files and the
network — and does *not* refuse the scalar ``file()``, which in chdb reads any file of the
server: that is why the guard on ClickHouse's parse tree exists. Then through the API, every
escape attempt is a 400 that leaks nothing.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from levered.db import clickhouse_engine as engine
from levered.db import clickhouse_guard as guard
from levered.server.app import create_app
from levered.settings import Settings
from tests.clickhouse_store import SECRET
from tests.conftest import Org

pytestmark = pytest.mark.anyio

URL = "/api/v2/warehouse"
PASSWD = "root:x:0:0"


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP port on loopback that records whatever connects to it (an SSRF would)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            seen.append(client.recv(200))
            client.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], seen
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.fixture
async def session(chdb_store: tuple[Path, Any]) -> AsyncIterator[engine.Session]:
    """A bare engine session as Levered opens it (``readonly = 1``), without the guard."""
    target = engine.ClickHouseTarget(f"chdb://{chdb_store[0]}", "analytics")
    opened = await engine.open_session(target, 5)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:{port}/', 'LineAsString')",
        "SELECT * FROM s3('http://127.0.0.1:{port}/bucket/k.csv')",
        "SELECT * FROM remote('127.0.0.1:{port}', system.one)",
        "SELECT * FROM executable('id', 'TSV', 'x String')",
        "SELECT * FROM postgresql('127.0.0.1:{port}', 'd', 't', 'u', 'p')",
        "SELECT * FROM filesystem('/etc')",
        "SET readonly = 0",
        "SELECT * FROM file('/etc/passwd', 'LineAsString') SETTINGS readonly = 0",
        "SELECT 1 SETTINGS max_execution_time = 1000",
        "INSERT INTO analytics.purchases VALUES ('x', now(), 1, false)",
        "DROP TABLE analytics.purchases",
        "CREATE TABLE analytics.t (x Int8) ENGINE = Memory",
        "SYSTEM SHUTDOWN",
    ],
)
async def test_the_readonly_session_alone_refuses(
    session: engine.Session, listener: tuple[int, list[bytes]], sql: str
) -> None:
    port, seen = listener
    with pytest.raises(engine.ServerError) as refused:
        await session.query(sql.replace("{port}", str(port)))
    assert refused.value.code == 164, refused.value.message  # READONLY
    assert seen == []


async def test_the_readonly_session_alone_still_reads_files_with_scalar_file(
    session: engine.Session,
) -> None:
    """The hole the guard closes: chdb ("local" mode) ignores user_files_path for file()."""
    result = await session.query("SELECT file('/etc/passwd')")
    assert PASSWD in result.data[0][0]


@pytest.fixture
async def api(
    db_url: str, chdb_store: tuple[Path, Any], org: Org
) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = Settings(
        database_url=db_url,
        log_level="warning",
        secret_key="escapes",
        scheduler=False,
        chdb_root=str(chdb_store[0].parent),
    )
    chdb_store[1].query("TRUNCATE TABLE analytics.purchases")
    chdb_store[1].query("INSERT INTO analytics.purchases VALUES ('u1', now64(6), 1, false)")
    async with AsyncTestClient(create_app(settings)) as client:
        body = {
            "provider": "clickhouse",
            "dataset_id": "analytics",
            "credentials": {"url": f"chdb://{chdb_store[0]}"},
        }
        connected = await client.put(URL, json=body, headers=org.headers)
        assert connected.status_code == 200, connected.text
        yield client


ESCAPES = [
    # files and the network
    "SELECT file('/etc/passwd')",
    "SELECT arrayMap(p -> file(p), ['/etc/passwd'])",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:{port}/', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:{port}/bucket/k.csv')",
    "SELECT * FROM remote('127.0.0.1:{port}', system.one)",
    "SELECT * FROM executable('id', 'TSV', 'x String')",
    "SELECT * FROM postgresql('127.0.0.1:{port}', 'd', 't', 'u', 'p')",
    "SELECT * FROM python('print(1)')",
    "SELECT * FROM format(CSV, '1,2')",
    "SELECT getServerSetting('path')",
    "SELECT Fqdn() AS host",
    "SELECT 1 INTO OUTFILE '{outfile}'",
    "SELECT 1) INTO OUTFILE '{outfile}' --",
    # settings
    "SET readonly = 0",
    "SELECT * FROM file('/etc/passwd', 'LineAsString') SETTINGS readonly = 0",
    "SELECT 1 SETTINGS readonly = 2",
    # several statements, or one that escapes the wrapper
    "SELECT 1; DROP TABLE purchases",
    "SELECT 1); DROP TABLE purchases; SELECT * FROM (SELECT 1",
    "SELECT 1); KILL QUERY WHERE 1; SELECT * FROM (SELECT 1",
    "SELECT 1) UNION ALL SELECT x FROM other.secrets UNION ALL SELECT * FROM (SELECT '1'",
    "SELECT 1) FORMAT CSV /*",
    "DROP TABLE purchases",
    "INSERT INTO purchases VALUES ('x', now(), 1, false)",
    # other databases and the server's catalog
    "SELECT * FROM other.secrets",
    "SELECT * FROM `other`.`secrets`",
    "SELECT * FROM merge('other', '.*')",
    "SELECT * FROM view(SELECT x FROM other.secrets)",
    "SELECT 1 WHERE 'x' IN other.secrets",
    "SELECT joinGet('other.secrets', 'x', 1)",
    "SELECT dictGet('other.d', 'x', 1)",
    "SELECT name FROM system.tables",
    "SELECT * FROM system.databases",
    "SELECT * FROM INFORMATION_SCHEMA.TABLES",
    "SELECT * FROM information_schema.tables",
]


@pytest.mark.parametrize("sql", ESCAPES)
async def test_every_escape_is_a_400_that_leaks_nothing(
    api: AsyncTestClient[Any],
    org: Org,
    chdb_store: tuple[Path, Any],
    listener: tuple[int, list[bytes]],
    tmp_path: Path,
    sql: str,
) -> None:
    port, seen = listener
    outfile = tmp_path / "written.txt"
    sent = sql.replace("{port}", str(port)).replace("{outfile}", str(outfile))
    response = await api.post(f"{URL}/query", json={"sql": sent}, headers=org.headers)
    assert response.status_code == 400, response.text
    for leak in (PASSWD, SECRET, str(chdb_store[0])):
        assert leak not in response.text
    assert seen == [] and not outfile.exists()
    # the customer's table is untouched, and the session can still read it
    count = await api.post(
        f"{URL}/query", json={"sql": "SELECT count() AS n FROM purchases"}, headers=org.headers
    )
    assert count.json()["rows"] == [[1]]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT user_id, ts FROM purchases WHERE ts >= @start_date AND file('/etc/passwd') != ''",
        "SELECT x AS user_id, now64(6) AS ts FROM other.secrets",
    ],
)
async def test_metric_sql_is_guarded_too(api: AsyncTestClient[Any], org: Org, sql: str) -> None:
    metric = {"name": "m", "sql": sql, "anonymous_id_col": "user_id", "timestamp_col": "ts"}
    response = await api.post("/api/v2/metrics", json=metric, headers=org.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["path"] == "$.sql"
    assert PASSWD not in response.text and SECRET not in response.text


async def test_what_stays_allowed(api: AsyncTestClient[Any], org: Org) -> None:
    """The guard is not a wall: ordinary analytics over the database's own tables work."""
    for sql in (
        "WITH c AS (SELECT user_id FROM purchases) SELECT count() FROM c",
        "SELECT number FROM numbers(3) WHERE number IN (SELECT 1)",
        "SELECT p.user_id FROM analytics.purchases AS p ARRAY JOIN [1, 2] AS a",
        "SELECT * FROM view(SELECT user_id FROM purchases)",
        "SELECT user_id FROM purchases UNION ALL SELECT 'x'",
        "SELECT 'SELECT * FROM file(x)' AS text -- file() in a string or comment is no call",
        "SELECT format('{}-{}', user_id, 'x') FROM purchases",
    ):
        response = await api.post(f"{URL}/query", json={"sql": sql}, headers=org.headers)
        assert response.status_code == 200, (sql, response.text)


@pytest.mark.slow
async def test_no_function_of_the_engine_reads_files_or_connects_past_the_guard(
    session: engine.Session, listener: tuple[int, list[bytes]]
) -> None:
    """A sweep of every scalar function this chdb has, called on the readonly session with a
    path or a loopback address: whichever returns the file's text or makes a connection must be
    one the guard refuses. (On chdb 4.4 / ClickHouse 26.9 that is ``file`` alone.) A function a
    later release adds that reads files fails this test instead of passing silently."""
    port, seen = listener
    names = await session.query("SELECT name FROM system.functions WHERE is_aggregate = 0")
    shapes = ["'/etc/passwd'", "'/etc/passwd', 'x'", f"'http://127.0.0.1:{port}/'"]
    shapes.append(f"'127.0.0.1:{port}'")
    readers, connectors = set(), set()
    for (name,) in names.data:
        if name in ("sleep", "sleepEachRow"):
            continue
        for args in shapes:
            before = len(seen)
            try:
                found = await session.query(f"SELECT toString({name}({args}))")
            except (engine.ServerError, msgspec.DecodeError):  # refused, or not JSON-able
                continue
            finally:
                if len(seen) > before:
                    connectors.add(name)
            if PASSWD in str(found.data):
                readers.add(name)
    denied = {n.lower() for n in guard.DENIED_FUNCTIONS}
    assert readers, "the sweep itself is broken: file() reads files in chdb"
    assert {n for n in readers | connectors if n.lower() not in denied} == set()


@pytest.fixture(params=[200, 404, 500])
def internal_service(request: pytest.FixtureRequest) -> Iterator[int]:
    """An HTTP service on loopback that is not ClickHouse (a metadata endpoint, an admin page)
    and answers every request with a secret, under the status of the parameter."""
    status: int = request.param

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            body = INTERNAL_SECRET.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


INTERNAL_SECRET = "ami-secret-access-key-0123"


async def test_an_http_url_cannot_read_an_internal_service_through_the_connection_test(
    api: AsyncTestClient[Any], other_org: Org, internal_service: int
) -> None:
    """SSRF from the attacker's side: the connection test reaches the URL (that is its job),
    but what answered is never repeated unless it is ClickHouse's own error text."""
    body = {
        "provider": "clickhouse",
        "dataset_id": "analytics",
        "credentials": {"url": f"http://127.0.0.1:{internal_service}"},
    }
    response = await api.put(URL, json=body, headers=other_org.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "warehouse_connection_failed"
    assert INTERNAL_SECRET not in response.text
    assert "no ClickHouse answered" in response.json()["error"]["message"]
