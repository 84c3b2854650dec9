"""Running an organization's hand-written SQL (warehouse queries, metric SQL) safely.

Where the safety comes from — PostgreSQL, not this module's parsing (it parses nothing):

* **Who**: the SQL runs on a connection logged in *as the organization's tenant role*
  (:func:`levered.db.warehouse.tenant_connection`). Row-level security keys on
  ``session_user``, which no statement of the tenant can change; the role has SELECT on
  ``warehouse.exposures`` and ``warehouse.rewards`` and nothing else (no control-plane table, no
  USAGE on schema ``public``, no advisory locks, no temporary tables: migrations 0002 and 0004).
* **Read only**: every run is one ``BEGIN … READ ONLY`` transaction that is always rolled back,
  so even ``set_config(…, false)`` and ``pg_notify`` leave nothing behind.
* **One statement**: the SQL goes through the extended protocol (``prepare``), which refuses
  several commands in one string. A statement that returns no rows (``SET``, ``COPY``, DDL,
  ``PREPARE`` …) is refused after the server has *described* it and before it runs: only
  queries can run here, whatever the server would have said about the statement itself.
* **Bounded**: ``statement_timeout`` (per transaction, and a longer backstop on the role),
  ``idle_in_transaction_session_timeout``, ``work_mem`` and ``temp_file_limit`` on the role
  (only a superuser may set the last one, so the tenant cannot raise it), rows fetched through
  a cursor in chunks, stopping at ``limit`` rows or ``max_bytes`` of JSON: a query over ten
  million rows returns its first rows and ``truncated``, it is never read to the end.
* **search_path** is ``warehouse`` (so ``FROM rewards`` works). The tenant may change it; that
  grants nothing, the privileges above are what protect.

Connections are opened per use (≈ 20–30 ms, measured: mostly the SCRAM login and asyncpg's
codec setup) instead of pooled per organization: a fresh session per query cannot inherit
anything (prepared statements, session settings) from an earlier query, there is no pool to
close or bound per tenant, and the tenant role's ``CONNECTION LIMIT`` (20) caps concurrency.

Errors: every failure of the tenant's SQL becomes :class:`~levered.errors.ValidationError`
(400) with the SQLSTATE, the server's message and, when known, the position in ``details``.
A timeout says "timeout". Failing to reach the database as the tenant is
:class:`~levered.errors.Unavailable` (503).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.prepared_stmt import PreparedStatement

from levered.db import Connection
from levered.db.warehouse import TenantRole, ensure_tenant_role, tenant_connection
from levered.errors import Unavailable, ValidationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one run of tenant SQL may use. Tests shrink ``timeout_s``."""

    timeout_s: float = 10.0
    """statement_timeout of each run (the server cancels the statement)."""
    max_rows: int = 10_000
    """The largest ``limit`` a caller may ask for."""
    max_bytes: int = 4 * 1024 * 1024
    """Stop fetching once the JSON of the rows read so far is this large."""


DEFAULT_LIMITS: Final = Limits()

# Set on every tenant login role (group roles do not pass ALTER ROLE ... SET on to members).
# A backstop behind the per-transaction settings; temp_file_limit is the one the tenant
# cannot override (superuser-only parameter).
ROLE_SETTINGS: Final = {
    "search_path": "warehouse",
    "statement_timeout": "60s",
    "idle_in_transaction_session_timeout": "60s",
    "work_mem": "16MB",
    "temp_file_limit": "1GB",
}
_FETCH_CHUNK: Final = 500
_PYTHON_GRACE_S: Final = 5.0  # the server's timeout fires first; this only guards a hung socket

SERVER_ADDRESS: Final = """
SELECT host(inet_server_addr()) AS host, inet_server_port() AS port,
       current_database() AS database,
       split_part(current_setting('unix_socket_directories'), ',', 1) AS socket_dir
"""
SELECT_ROLE_SETTINGS: Final = """
SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
WHERE r.rolname = $1 AND s.setdatabase = 0
"""
TYPE_NAMES: Final = (
    "SELECT t.oid, format_type(t.oid, NULL) AS name FROM unnest($1::oid[]) AS t(oid)"
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    """PostgreSQL's name for the type, as ``format_type`` spells it (``timestamp with time
    zone``, ``text``, ``double precision``)."""
    type_oid: int


@dataclass(frozen=True)
class QueryResult:
    columns: list[Column]
    rows: list[list[Any]]
    """JSON-ready values (see :func:`jsonable`)."""
    truncated: bool
    elapsed_ms: float


async def server_dsn(admin: Connection) -> str:
    """Where the app's own connection is connected, as a DSN without credentials.

    Used when the app was not told its database URL explicitly: a TCP connection names the
    server's address and port, a Unix-socket one its first socket directory. Behind a proxy
    or NAT the address the server sees may not be reachable from here; pass the URL instead.
    """
    row = await admin.fetchrow(SERVER_ADDRESS)
    assert row is not None
    if row["host"]:
        host = row["host"]
        host = f"[{host}]" if ":" in host else host
        return f"postgresql://{host}:{row['port']}/{row['database']}"
    return f"postgresql:///{row['database']}?host={row['socket_dir']}&port={row['port']}"


async def configure_tenant_role(admin: Connection, role: TenantRole) -> None:
    """Put :data:`ROLE_SETTINGS` on the role unless they are there already (idempotent)."""
    wanted = [f"{key}={value}" for key, value in ROLE_SETTINGS.items()]
    current = await admin.fetchval(SELECT_ROLE_SETTINGS, role.name)
    if current is not None and sorted(current) == sorted(wanted):
        return
    assert role.name.startswith("levered_org_") and role.name.isidentifier()
    statements = "; ".join(
        f"ALTER ROLE {role.name} SET {key} = '{value}'" for key, value in ROLE_SETTINGS.items()
    )
    try:
        await admin.execute(statements)
    except asyncpg.PostgresError as exc:  # e.g. "tuple concurrently updated": a backstop only
        log.warning("could not configure tenant role %s: %s", role.name, exc)


@asynccontextmanager
async def tenant_session(
    admin: Connection, organization_id: UUID, *, dsn: str | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A connection logged in as the organization's tenant role, for :func:`run`/:func:`describe`.

    ``admin`` is the app's own (privileged) connection; ``dsn`` where to log in (default: where
    ``admin`` is connected). Failing to log in is :class:`~levered.errors.Unavailable`.
    """
    role = await ensure_tenant_role(admin, organization_id)
    await configure_tenant_role(admin, role)
    target = dsn or await server_dsn(admin)
    async with AsyncExitStack() as stack:
        try:
            conn = await stack.enter_async_context(
                tenant_connection(admin, target, organization_id)
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise Unavailable(
                "could not connect to the warehouse as the organization; retry shortly",
                details={"cause": exc.__class__.__name__},
            ) from exc
        yield conn


@asynccontextmanager
async def read_only(
    conn: asyncpg.Connection, limits: Limits, *, schema: str = "warehouse"
) -> AsyncIterator[None]:
    """One read-only transaction with the run's limits, always rolled back; unqualified names
    resolve in ``schema`` (the managed ``warehouse``, or a connected warehouse's dataset)."""
    timeout_ms = max(1, int(limits.timeout_s * 1000))
    await conn.execute(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
        f"SET LOCAL statement_timeout = {timeout_ms}; "
        f"SET LOCAL lock_timeout = {timeout_ms}; "
        f"SET LOCAL idle_in_transaction_session_timeout = {timeout_ms + 5000}; "
        f"SET LOCAL search_path = {quote_ident(schema)}; "
        "SET LOCAL TimeZone = 'UTC'"
    )
    try:
        yield
    finally:
        if not conn.is_closed():
            try:
                await conn.execute("ROLLBACK")
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                conn.terminate()


async def describe(
    conn: asyncpg.Connection, sql: str, *, parameters: int = 0
) -> tuple[PreparedStatement[asyncpg.Record], list[Column]]:
    """Prepare ``sql`` (inside :func:`read_only`) and name its result columns.

    Refuses several statements, statements that return no rows and a parameter count other than
    ``parameters``. Nothing of the statement runs yet.
    """
    with translated_errors():
        stmt = await conn.prepare(sql)
        attributes = stmt.get_attributes()
        if not attributes:
            raise ValidationError(
                "only a query that returns rows can run here (SELECT, WITH … SELECT, VALUES, "
                "TABLE); this statement returns none, so it was not run",
                details={"reason": "not_a_query"},
            )
        found = len(stmt.get_parameters())
        if found != parameters:
            raise ValidationError(
                f"the query has {found} parameter placeholder(s) ($1 …) but {parameters} "
                "value(s) are bound here"
                + (" (only @start_date, in metric SQL)" if parameters else ""),
                details={"reason": "parameters"},
            )
        oids = [attr.type.oid for attr in attributes]
        names = {row["oid"]: row["name"] for row in await conn.fetch(TYPE_NAMES, oids)}
    columns = [
        Column(attr.name, names.get(attr.type.oid, attr.type.name), attr.type.oid)
        for attr in attributes
    ]
    return stmt, columns


async def run(
    conn: asyncpg.Connection,
    sql: str,
    params: Sequence[Any] = (),
    *,
    limit: int,
    limits: Limits = DEFAULT_LIMITS,
    schema: str = "warehouse",
) -> QueryResult:
    """Run one tenant query read-only and return at most ``limit`` rows (JSON-ready)."""
    limit = max(0, min(limit, limits.max_rows))
    started = time.perf_counter()
    try:
        async with (
            asyncio.timeout(limits.timeout_s + _PYTHON_GRACE_S),
            read_only(conn, limits, schema=schema),
        ):
            stmt, columns = await describe(conn, sql, parameters=len(params))
            rows, truncated = await _fetch(stmt, params, limit, limits.max_bytes)
    except TimeoutError as exc:
        raise _timeout(limits) from exc
    except ValidationError as exc:
        if isinstance(exc.details, dict) and exc.details.get("sqlstate") == "57014":
            raise _timeout(limits, exc.details) from exc
        raise
    return QueryResult(columns, rows, truncated, round((time.perf_counter() - started) * 1000, 2))


async def _fetch(
    stmt: PreparedStatement[asyncpg.Record],
    params: Sequence[Any],
    limit: int,
    max_bytes: int,
) -> tuple[list[list[Any]], bool]:
    rows: list[list[Any]] = []
    size = 2
    with translated_errors():
        cursor = await stmt.cursor(*params)
        while True:
            want = min(_FETCH_CHUNK, limit + 1 - len(rows))
            batch = await cursor.fetch(want)
            for record in batch:
                if len(rows) == limit:
                    return rows, True
                row = [jsonable(value) for value in record.values()]
                size += len(_encode(row)) + 1
                if size > max_bytes:
                    return rows, True
                rows.append(row)
            if len(batch) < want:
                return rows, False


_encode = msgspec.json.Encoder().encode


def jsonable(value: Any) -> Any:
    """A value as JSON can carry it: timestamps and intervals as ISO 8601, uuids as strings,
    jsonb as JSON, numeric as numbers (non-finite ones as strings), bytea as ``\\x…`` hex,
    arrays as lists, anything else (ranges, network addresses, geometry) as its text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        return (
            int(value)
            if value == value.to_integral_value() and abs(value) < 2**53
            else float(value)
        )
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, asyncpg.Record):
        return [jsonable(item) for item in value.values()]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dt.timedelta):
        return msgspec.to_builtins(value)  # ISO 8601 duration, e.g. "P1D"
    if isinstance(value, asyncpg.Range):  # as PostgreSQL writes it: "[1,5)", "empty"
        if value.isempty:
            return "empty"
        lower = "" if value.lower is None else jsonable(value.lower)
        upper = "" if value.upper is None else jsonable(value.upper)
        return f"{'[' if value.lower_inc else '('}{lower},{upper}{']' if value.upper_inc else ')'}"
    if isinstance(value, asyncpg.BitString):
        return value.as_string()
    return str(value)


# -- errors -------------------------------------------------------------------------------------

_MESSAGES: Final = {
    "42501": "permission denied: tenant SQL can read only the warehouse tables exposures and "
    "rewards",
    "25006": "the warehouse is read-only here",
    "57014": "the query ran past the timeout and was cancelled",
    "42P01": "unknown table (the warehouse has exposures and rewards)",
    "42703": "unknown column",
    "42883": "unknown function or operator (extensions such as dblink are not available)",
    "42601": "SQL syntax error",
    "3F000": "unknown schema",
    "53400": "the query needs more temporary disk space than allowed",
    "54000": "the query exceeds a PostgreSQL limit",
}
_MULTIPLE: Final = "cannot insert multiple commands into a prepared statement"


class _Translated:
    """Context manager turning asyncpg errors of tenant SQL into :class:`ValidationError`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, ValidationError):
            return
        if isinstance(exc, asyncpg.PostgresError):
            raise sql_error(exc) from exc
        if isinstance(exc, asyncpg.InterfaceError) and not isinstance(
            exc, asyncpg.ConnectionDoesNotExistError
        ):
            raise ValidationError(
                f"the query could not run: {exc}", details={"reason": "interface"}
            ) from exc
        if isinstance(exc, (asyncpg.ConnectionDoesNotExistError, ConnectionError)):
            raise ValidationError(
                "the query ended its own database connection",
                details={"reason": "connection_lost"},
            ) from exc


def translated_errors() -> _Translated:
    return _Translated()


def sql_error(exc: asyncpg.PostgresError) -> ValidationError:
    """The 400 for a failed tenant statement: what kind of failure, then the server's words."""
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    server = str(getattr(exc, "message", None) or exc)
    if server == _MULTIPLE:
        headline = "only one SQL statement can run at a time"
    elif sqlstate == "57014" and "timeout" not in server:
        headline = "the query was cancelled"
    else:
        headline = (
            _MESSAGES.get(sqlstate) or _MESSAGES.get(sqlstate[:2] + "000") or "the query failed"
        )
    details: dict[str, Any] = {"sqlstate": sqlstate, "server_message": server}
    for field in ("detail", "hint", "position"):
        value = getattr(exc, field, None)
        if value:
            details[field] = int(value) if field == "position" and str(value).isdigit() else value
    return ValidationError(f"{headline}: {server}", details=details)


def _timeout(limits: Limits, details: dict[str, Any] | None = None) -> ValidationError:
    return ValidationError(
        f"the query ran past the {limits.timeout_s:g} s timeout and was cancelled",
        details={**(details or {}), "sqlstate": "57014", "timeout_s": limits.timeout_s},
    )


# -- what tenant SQL can read (the catalog the warehouse endpoints show) -------------------------

TABLES: Final = ("exposures", "rewards")
"""The tables of the managed warehouse that tenant SQL can read, in schema ``warehouse``."""
HIDDEN_COLUMNS: Final = frozenset({"organization_id"})
"""Readable but not listed: always the caller's own organization (row-level security)."""

SELECT_COLUMNS: Final = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable, col_description(a.attrelid, a.attnum) AS description
FROM pg_attribute a
WHERE a.attrelid = to_regclass('warehouse.' || quote_ident($1)) AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attnum
"""
SELECT_TABLE_DESCRIPTION: Final = """
SELECT obj_description(to_regclass('warehouse.' || quote_ident($1)), 'pg_class')
"""
SELECT_PROVIDER: Final = "SELECT warehouse_provider FROM organizations WHERE id = $1"
UPDATE_PROVIDER: Final = """
UPDATE organizations SET warehouse_provider = $2 WHERE id = $1 RETURNING warehouse_provider
"""


async def table_columns(conn: Connection, table: str) -> list[asyncpg.Record]:
    """Every column of a warehouse table (hidden ones included), in table order."""
    return await conn.fetch(SELECT_COLUMNS, table)


async def table_description(conn: Connection, table: str) -> str | None:
    value = await conn.fetchval(SELECT_TABLE_DESCRIPTION, table)
    return None if value is None else str(value)


async def warehouse_provider(conn: Connection, organization_id: UUID) -> str | None:
    value = await conn.fetchval(SELECT_PROVIDER, organization_id)
    return None if value is None else str(value)


async def set_warehouse_provider(conn: Connection, organization_id: UUID, provider: str) -> None:
    await conn.execute(UPDATE_PROVIDER, organization_id, provider)


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (for names checked against the catalog first)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a standard SQL string literal (only quotes are doubled)."""
    return "'" + text.replace("'", "''") + "'"
