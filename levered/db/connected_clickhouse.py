"""A connected ClickHouse warehouse: the SQL Levered runs there, in ClickHouse's dialect.

Tenant SQL (ad-hoc queries, previews, metric SQL) never runs as written. :func:`run` wraps it
as a subquery with a ``LIMIT``, has ClickHouse parse the whole statement (``formatQuery``:
exactly one statement, or an error), checks that statement's tree
(:mod:`levered.db.clickhouse_guard`) and runs the formatted text, on a session whose
``readonly = 1`` and ``max_execution_time`` the statement cannot change
(:mod:`levered.db.clickhouse_engine`). The catalog queries are Levered's own and read
``system.tables`` / ``system.columns`` of the connected database only.

Reward rows come back normalized, as from a connected PostgreSQL
(:func:`levered.db.connected_postgres.rows_sql`): ``@start_date`` is the parameter
``{start_date:DateTime64(6, 'UTC')}``, and rows are bounded to ``[start_date, end_date]`` so a
training pass reads only the rewards that can fall in the windows it attributes. Times travel
as microseconds since the epoch (exact, and cheap to turn into datetimes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from levered.db import clickhouse_guard as guard
from levered.db.clickhouse_engine import Column, Result, ServerError, Session

START_DATE: Final = re.compile(r"@start_date\b", re.IGNORECASE)
START_PARAM: Final = "{start_date:DateTime64(6, 'UTC')}"
END_PARAM: Final = "{end_date:DateTime64(6, 'UTC')}"
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_TIME: Final = datetime(1900, 1, 1, tzinfo=UTC)
LAST_TIME: Final = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)
_DATETIME: Final = re.compile(r"^(?:Nullable\()?(?:LowCardinality\()?DateTime(?:64)?\b")
_ZONE: Final = re.compile(r"'([^']+)'\)*$")


def quote_ident(name: str) -> str:
    """A ClickHouse identifier in backticks (backslash escapes, as ClickHouse reads them)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def bind_start_date(sql: str) -> str:
    """The metric SQL with ``@start_date`` as a bound parameter and a trailing ``;`` removed."""
    return START_DATE.sub(START_PARAM, sql).rstrip().rstrip(";").rstrip()


def string_literal(text: str) -> str:
    """A ClickHouse string constant (backslash escapes, as ClickHouse reads them)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def float_literal(x: float) -> str:
    """A Float64 constant, exact (``repr`` round-trips a double, and so does the parse)."""
    return f"toFloat64({string_literal(repr(float(x)))})"


def param_time(at: datetime) -> str:
    """A datetime as the ``DateTime64(6, 'UTC')`` parameter text, within the type's range
    (1900–2299: "from the beginning" and "to the end" bounds become its ends)."""
    clamped = min(max(at.astimezone(UTC), FIRST_TIME), LAST_TIME)
    return f"{clamped.year:04d}" + clamped.strftime("-%m-%d %H:%M:%S.%f")


def time_params(sql: str, start: datetime, end: datetime | None = None) -> dict[str, str]:
    """The parameters the text uses among ``start_date`` and ``end_date``."""
    params = {}
    if START_PARAM in sql:
        params["start_date"] = param_time(start)
    if end is not None and END_PARAM in sql:
        params["end_date"] = param_time(end)
    return params


# -- running tenant SQL -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    columns: list[Column]
    rows: list[list[Any]]
    """JSON-ready values (times as ISO 8601 with their offset)."""
    truncated: bool
    elapsed_ms: float


CATALOG: Final = (
    "SELECT (SELECT groupArray(name) FROM system.databases) AS databases, "
    "(SELECT groupArray(name) FROM system.table_functions) AS table_functions"
)


async def checked(session: Session, sql: str, database: str, params: dict[str, Any]) -> str:
    """The statement as ClickHouse formats it, once its tree passed the guard; raises
    :class:`~levered.db.clickhouse_guard.Refused` or :class:`ServerError`."""
    formatted = await session.query("SELECT formatQuery({q:String})", {"q": sql})
    text = str(formatted.data[0][0])
    tree = await session.query(f"EXPLAIN AST {text}", params)
    catalog = (await session.query(CATALOG)).data[0]
    guard.check(
        "\n".join(str(row[0]) for row in tree.data),
        database,
        frozenset(catalog[0]),
        frozenset(catalog[1]),
    )
    return text


async def run(
    session: Session,
    sql: str,
    params: dict[str, Any],
    *,
    database: str,
    limit: int,
    max_bytes: int,
) -> Outcome:
    """At most ``limit`` rows of the tenant's query (one more is asked for, to know whether
    more exist), and no more rows than fit in ``max_bytes`` of JSON."""
    body = sql.rstrip().rstrip(";").rstrip()
    # The newline before ")" keeps a trailing "-- comment" of the SQL from eating it.
    wrapped = f"SELECT * FROM (\n{body}\n) LIMIT {int(limit) + 1}"
    started = time.perf_counter()
    text = await checked(session, wrapped, database, params)
    result = await session.query(text, params)
    elapsed = (time.perf_counter() - started) * 1000
    converters = [_converter(c.type) for c in result.meta]
    rows: list[list[Any]] = []
    size = 0
    truncated = len(result.data) > limit
    for raw in result.data[:limit]:
        row = [convert(value) for convert, value in zip(converters, raw, strict=True)]
        size += len(msgspec.json.encode(row))
        if size > max_bytes:
            truncated = True
            break
        rows.append(row)
    return Outcome(result.meta, rows, truncated, elapsed)


def _converter(type_name: str) -> Any:
    """How a ``JSONCompact`` value of the type becomes a wire value: date-times gain their
    offset (ClickHouse writes them in the column's zone, the session's being UTC)."""
    if not _DATETIME.match(type_name):
        return _same
    zone_name = _ZONE.search(type_name)
    zone = ZoneInfo(zone_name.group(1)) if zone_name else UTC

    def to_iso(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return datetime.fromisoformat(value).replace(tzinfo=zone).isoformat()

    return to_iso


def _same(value: Any) -> Any:
    return value


# -- the catalog and the connection test ------------------------------------------------------

DATABASE_EXISTS: Final = "SELECT count() FROM system.databases WHERE name = {db:String}"
TABLES: Final = """
SELECT name, comment, total_rows FROM system.tables
WHERE database = {db:String} AND NOT is_temporary ORDER BY name
"""
COLUMNS: Final = """
SELECT name, type, comment FROM system.columns
WHERE database = {db:String} AND table = {table:String} ORDER BY position
"""


async def database_exists(session: Session, database: str) -> bool:
    result = await session.query(DATABASE_EXISTS, {"db": database})
    return bool(result.data[0][0])


async def tables(session: Session, database: str) -> list[tuple[str, str | None, int | None]]:
    """The database's tables and views: ``(name, comment or None, rows)``; ``rows`` is what
    the engine keeps for a MergeTree table without counting (None for a view)."""
    result = await session.query(TABLES, {"db": database})
    return [
        (str(name), str(comment) or None, None if rows is None else int(rows))
        for name, comment, rows in result.data
    ]


async def columns(
    session: Session, database: str, table: str
) -> list[tuple[str, str, bool, str | None]]:
    """``(name, type, nullable, comment)`` of a table, in order; empty when there is none."""
    result = await session.query(COLUMNS, {"db": database, "table": table})
    return [
        (str(name), str(kind), str(kind).startswith("Nullable("), str(comment) or None)
        for name, kind, comment in result.data
    ]


async def unreadable(session: Session, database: str, names: list[str]) -> list[str]:
    """The tables the account may not read (a server's grants; chdb has none)."""
    refused = []
    for name in names:
        try:
            await session.query(
                f"SELECT 1 FROM {quote_ident(database)}.{quote_ident(name)} LIMIT 0"
            )
        except ServerError as exc:
            if exc.code != 497:  # ACCESS_DENIED; anything else is not about the grants
                raise
            refused.append(name)
    return refused


WRITE_PRIVILEGES: Final = frozenset(
    {"ALL", "INSERT", "ALTER", "CREATE", "DROP", "UNDROP", "TRUNCATE", "OPTIMIZE", "MOVE"}
)
"""First words of the privileges that change data or schema (``ALTER UPDATE``, ``CREATE
TABLE``, ``MOVE PARTITION BETWEEN SHARDS``, …): what makes an account more than a reader."""
_GRANT: Final = re.compile(r"^GRANT (?P<privileges>.+?) ON (?P<scope>\S+) TO ", re.DOTALL)
_SYNTAX_ERROR: Final = 62


def write_grants(lines: list[str], database: str) -> list[str]:
    """The write privileges among ``SHOW GRANTS`` lines that reach ``database``
    (``priv ON scope``, in order). A privilege on ``*.*`` or on the database or one of its
    tables counts; one on another database does not. ``REVOKE`` lines are ignored (a partial
    revoke can only make the account less able: the warning may then say too much, never
    too little), and so are roles granted (``SHOW GRANTS FINAL`` lists their privileges)."""
    found: list[str] = []
    for line in lines:
        match = _GRANT.match(line.strip())
        if match is None:
            continue
        scope = match["scope"]
        if scope.split(".", 1)[0].strip('`"') not in ("*", database):
            continue
        privileges = re.sub(r"\([^)]*\)", "", match["privileges"])  # INSERT(a, b) → INSERT
        for privilege in (p.strip() for p in privileges.split(",")):
            if privilege.split(" ", 1)[0].upper() in WRITE_PRIVILEGES:
                found.append(f"{privilege} ON {scope}")
    return found


async def account_write_grants(session: Session, database: str) -> list[str]:
    """:func:`write_grants` of the session's account, its roles' privileges merged
    (``SHOW GRANTS FINAL``; a server too old for ``FINAL`` lists the account's own)."""
    try:
        result = await session.query("SHOW GRANTS FINAL")
    except ServerError as exc:
        if exc.code != _SYNTAX_ERROR:
            raise
        result = await session.query("SHOW GRANTS")
    return write_grants([str(row[0]) for row in result.data], database)


# -- reward rows ------------------------------------------------------------------------------


def rows_sql(
    bound_sql: str,
    anonymous_id_col: str,
    timestamp_col: str,
    value_col: str | None,
    *,
    bool_metric: bool,
    weights: Callable[[str | None], str] | None = None,
) -> str:
    """The metric (``@start_date`` bound) as ``(anonymous_id, ts_us, value)`` rows in
    ``[start_date, end_date]``; a Bool or a number in the value column becomes a Float64.
    ``weights``: a weighted metric's outcome weight given that number (None without a value
    column); rows it gives NULL (no outcome) are dropped, as on the other providers."""
    q = quote_ident
    anon, ts = f"m.{q(anonymous_id_col)}", f"m.{q(timestamp_col)}"
    at = f"toDateTime64({ts}, 6, 'UTC')"
    where = [f"{anon} IS NOT NULL", f"{ts} IS NOT NULL", f"{at} >= {START_PARAM}"]
    where.append(f"{at} <= {END_PARAM}")
    number = None if value_col is None else f"ifNull(toFloat64(m.{q(value_col)}), 0)"
    if weights is not None:
        value = weights(number)
        where.append(f"{value} IS NOT NULL")
    elif number is None:
        value = "toFloat64(1)"
    elif bool_metric:
        value = "toFloat64(1)"
        where.append(f"{number} > 0")
    else:
        value = number
    return (
        f"SELECT toString({anon}) AS anonymous_id, toUnixTimestamp64Micro({at}) AS ts_us, "
        f"{value} AS value\nFROM (\n{bound_sql}\n) AS m\nWHERE {' AND '.join(where)}"
    )


async def fetch_rewards(
    session: Session, sql: str, database: str, start: datetime, end: datetime
) -> tuple[list[str], list[datetime], list[float]]:
    """The normalized reward rows in ``[start, end]``, as columns (ids, times, values)."""
    params = time_params(sql, start, end)
    text = await checked(session, sql, database, params)
    result: Result = await session.query(text, params)
    ids = [str(r[0]) for r in result.data]
    times = [EPOCH + timedelta(microseconds=int(r[1])) for r in result.data]
    values = [float(r[2]) for r in result.data]
    return ids, times, values
