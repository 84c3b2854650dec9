"""How Levered reaches a connected ClickHouse: chdb in process, or a server over HTTP.

Both transports take the same SQL text (``{name:Type}`` parameters bound by the engine) and
return the same bytes (``JSONCompact``), so everything above this module is one code path; only
opening a session differs.

``chdb:///path``
    The ClickHouse engine inside this process (the ``chdb`` package). chdb hosts **one engine
    per process, bound to one data directory**: connections to that path may coexist (each with
    its own session settings), a connection to another path raises while any is open, and the
    engine shuts down when its last connection closes. So the first use of a path opens a
    *keeper* connection that is never queried and stays open for the life of the process (the
    engine is not restarted per query), and a second path is refused with a clear message.
    Each session is a new connection carrying its settings in its connection string (below),
    closed after use; chdb's calls block, so they run in a worker thread
    (:func:`anyio.to_thread.run_sync`), never on the event loop.

``http(s)://host:port``
    A ClickHouse server or cluster through ``clickhouse-connect``; the same settings travel
    with every request. Not exercised by the tests (no server here): it is kept to these few
    lines on purpose.

Every session runs with :func:`session_settings`: ``max_execution_time`` (the engine stops the
query), ``max_memory_usage`` (2 GiB), UTC, and last ``readonly = 1``, after which the session
refuses ``SET``, ``SETTINGS`` clauses, writes, DDL and the table functions that leave the
engine. What ``readonly`` does not stop is in :mod:`levered.db.clickhouse_guard`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import anyio
import msgspec

CONNECT_TIMEOUT_S: Final = 10.0
MAX_MEMORY_BYTES: Final = 2 * 1024**3
_CODE: Final = re.compile(r"Code: (\d+)")
_CLICKHOUSE_ERROR: Final = re.compile(r"Code: \d+\. DB::Exception: [^\n]*")
_HTTP_STATUS: Final = re.compile(r"HTTP status (\d{3})")


@dataclass(frozen=True)
class ClickHouseTarget:
    """Where and as whom Levered reads; ``database`` is the dataset (``dataset_id``)."""

    url: str
    database: str
    username: str = "default"
    password: str = ""


class Unreachable(Exception):
    """The engine could not be opened or reached; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServerError(Exception):
    """ClickHouse refused or failed the statement: ``code`` is its error code."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        found = _CODE.search(message)
        self.code = int(found.group(1)) if found else 0
        self.message = message.strip()


class Column(msgspec.Struct, frozen=True):
    name: str
    type: str


class Result(msgspec.Struct, frozen=True):
    """A ``JSONCompact`` answer: column names and ClickHouse types, rows as JSON arrays."""

    meta: list[Column]
    data: list[list[Any]]


_RESULT: Final = msgspec.json.Decoder(Result)


def session_settings(timeout_s: float) -> dict[str, Any]:
    """The settings of every session; ``readonly`` last, since it freezes the others."""
    return {
        "max_execution_time": max(0.1, float(timeout_s)),
        # In process, a query's memory is the Levered server's: one query may not take it all.
        "max_memory_usage": MAX_MEMORY_BYTES,
        "session_timezone": "UTC",
        "output_format_json_quote_64bit_integers": 0,
        "output_format_json_quote_denormals": 1,
        "output_format_json_validate_utf8": 1,  # bytes that are not UTF-8 become U+FFFD
        "readonly": 1,
    }


def is_chdb(url: str) -> bool:
    return url.startswith("chdb://")


def chdb_path(url: str) -> Path:
    """The data directory of a ``chdb:///absolute/path`` URL (where it may be: the caller)."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/"):
        raise ValueError("a chdb URL names an absolute path and no host: chdb:///var/lib/shop")
    if parts.query or parts.fragment or set(parts.path) & set("?&#%\n"):
        raise ValueError("the chdb path may not contain '?', '&', '#', '%' or a newline")
    return Path(parts.path)


# -- the in-process engine --------------------------------------------------------------------

_lock = threading.Lock()
_keeper: tuple[Path, Any] | None = None


def _open_engine(path: Path) -> None:
    """Keep the process's engine open at ``path`` (see the module doc); refuse another path."""
    global _keeper
    with _lock:
        if _keeper is not None:
            if _keeper[0] != path:
                raise Unreachable(
                    f"this server process already runs the in-process ClickHouse engine on "
                    f"{_keeper[0]}; chdb runs one data directory per process (restart the server "
                    "to switch, or use a ClickHouse server over http)"
                )
            return
        import chdb

        try:
            _keeper = (path, chdb.connect(f"file:{path}"))
        except RuntimeError as exc:  # another path is open in this process (not through us)
            raise Unreachable(
                f"cannot open the chdb engine on {path} ({exc}): chdb runs one data directory "
                "per process"
            ) from exc


class Session:
    """One session on the engine; :meth:`query` runs one statement and returns its result."""

    def __init__(self, run: Callable[[str, Mapping[str, Any]], bytes], close: Callable[[], None]):
        self._run = run
        self._close = close

    async def query(self, sql: str, params: Mapping[str, Any] | None = None) -> Result:
        raw = await anyio.to_thread.run_sync(self._run, sql, dict(params or {}))
        try:
            return _RESULT.decode(raw)
        except msgspec.DecodeError as exc:
            raise ServerError(f"the engine's answer is not JSONCompact: {exc}") from exc

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._close)


def _chdb_session(path: Path, database: str, timeout_s: float) -> Session:
    _open_engine(path)
    import chdb

    settings = {"database": database, **session_settings(timeout_s)}
    try:
        conn = chdb.connect(f"file:{path}?{urlencode(settings)}")
    except RuntimeError as exc:
        raise Unreachable(f"cannot open a session on {path}: {exc}") from exc

    def run(sql: str, params: Mapping[str, Any]) -> bytes:
        # chdb reads parameter values in ClickHouse's escaped (TSV) form, as the HTTP
        # interface does after clickhouse-connect escaped them: a newline must be "\\n".
        escaped = {k: _escaped(v) if isinstance(v, str) else v for k, v in params.items()}
        try:
            result = conn.query(sql, "JSONCompact", params=escaped or None)
        except RuntimeError as exc:
            raise ServerError(str(exc)) from exc
        return bytes(result.bytes())

    return Session(run, conn.close)


def _escaped(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    )


def http_reason(exc: Exception) -> str:
    """What the user is told when an HTTP request failed: ClickHouse's own exception text, or
    only the HTTP status. Never the body of whatever answered: the URL is the user's choice,
    and echoing an internal service's answer (a cloud metadata endpoint, an admin page) would
    make the connection test a way to read it."""
    message = str(exc)
    if found := _CLICKHOUSE_ERROR.search(message):
        return found.group(0)[:500]
    status = _HTTP_STATUS.search(message)
    if status is not None:
        return f"no ClickHouse answered (HTTP status {status.group(1)})"
    return f"no ClickHouse answered ({exc.__class__.__name__})"


def _http_session(target: ClickHouseTarget, timeout_s: float) -> Session:
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    parts = urlsplit(target.url)
    try:
        client = clickhouse_connect.get_client(
            host=parts.hostname,
            port=parts.port,
            secure=parts.scheme == "https",
            username=target.username,
            password=target.password,
            database=target.database,
            connect_timeout=CONNECT_TIMEOUT_S,
            send_receive_timeout=timeout_s + 5,
        )
    except (OperationalError, DatabaseError, OSError, ValueError) as exc:
        raise Unreachable(http_reason(exc)) from exc
    settings = session_settings(timeout_s)

    def run(sql: str, params: Mapping[str, Any]) -> bytes:
        try:
            return bytes(client.raw_query(sql, dict(params), settings=settings, fmt="JSONCompact"))
        except OperationalError as exc:
            raise Unreachable(http_reason(exc)) from exc
        except DatabaseError as exc:
            raise ServerError(http_reason(exc)) from exc

    return Session(run, client.close)


async def open_session(target: ClickHouseTarget, timeout_s: float) -> Session:
    """A session on the target with the module's settings (``timeout_s`` per statement)."""

    def opened() -> Session:
        if is_chdb(target.url):
            return _chdb_session(chdb_path(target.url), target.database, timeout_s)
        return _http_session(target, timeout_s)

    try:
        return await anyio.to_thread.run_sync(opened)
    except ImportError as exc:
        raise Unreachable(
            f"{exc.name} is not installed: install Levered with its clickhouse extra "
            "(pip install 'levered[clickhouse]')"
        ) from exc
