"""A connected PostgreSQL warehouse: the organization's own database, read by Levered only.

What protects the customer's database is the account they give Levered, and then this module:
every session is opened with ``default_transaction_read_only = on`` and every statement runs in
:func:`levered.db.sandbox.read_only` (a read-only transaction with ``statement_timeout``, always
rolled back), with ``search_path`` set to the connected dataset (schema). The connection test
(:func:`access`) reports an account without read access as an error and an account that could
write as a warning: Levered never writes, but a read-only account is what we ask for.

What protects other organizations is that a connection belongs to one organization
(``warehouse_connections``, keyed by it) and reaches only the database its owner named: no
Levered table is reachable through it, and Levered's own database is refused as a target
(:func:`is_levered_database`).

Reward rows come back normalized, as in the managed warehouse
(:func:`levered.services.metrics.metric_rows_sql`), but bounded on both sides (``$1`` the
start, also ``@start_date``; ``$2`` the end): a training pass reads only the rewards that can
fall in the windows it attributes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from levered.db import sandbox
from levered.db.attribution import fetch_metric_query
from levered.schemas.warehouse import SslMode

CONNECT_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class PostgresTarget:
    """Where and as whom Levered logs in; ``schema`` is the dataset (``dataset_id``)."""

    host: str
    port: int
    database: str
    username: str
    password: str
    sslmode: SslMode
    schema: str


class Unreachable(Exception):
    """Logging in failed; ``reason`` says why in the server's or the network's words."""

    def __init__(self, reason: str, *, authentication: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.authentication = authentication


@asynccontextmanager
async def session(target: PostgresTarget) -> AsyncIterator[asyncpg.Connection]:
    """One connection to the customer's database (opened per use, as tenant sessions are)."""
    try:
        conn = await asyncpg.connect(
            host=target.host,
            port=target.port,
            database=target.database,
            user=target.username,
            password=target.password,
            ssl=target.sslmode,
            timeout=CONNECT_TIMEOUT_S,
            statement_cache_size=0,  # the customer's schema may change under a cached plan
            server_settings={
                "application_name": "levered",
                "default_transaction_read_only": "on",
                "TimeZone": "UTC",
            },
        )
    except (
        asyncpg.InvalidPasswordError,
        asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidCatalogNameError,
    ) as exc:
        raise Unreachable(str(exc), authentication=True) from exc
    except (OSError, TimeoutError) as exc:
        raise Unreachable(f"{exc.__class__.__name__}: {exc}") from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unreachable(str(exc)) from exc
    try:
        yield conn
    finally:
        await conn.close(timeout=5)


# -- the connection test ----------------------------------------------------------------------

ACCESS: Final = """
SELECT to_regnamespace(quote_ident($1)) IS NOT NULL AS schema_exists,
       coalesce(has_schema_privilege(to_regnamespace(quote_ident($1)), 'USAGE'), false) AS usage,
       coalesce(has_schema_privilege(to_regnamespace(quote_ident($1)), 'CREATE'), false)
           AS can_create,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       (SELECT count(*) FROM pg_class c
        WHERE c.relnamespace = to_regnamespace(quote_ident($1))
          AND c.relkind IN ('r', 'v', 'm', 'p', 'f')) AS relations,
       (SELECT count(*) FROM pg_class c
        WHERE c.relnamespace = to_regnamespace(quote_ident($1))
          AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
          AND has_table_privilege(c.oid, 'SELECT')) AS readable,
       (SELECT array_agg(c.relname ORDER BY c.relname) FROM pg_class c
        WHERE c.relnamespace = to_regnamespace(quote_ident($1))
          AND c.relkind IN ('r', 'p')
          AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')) AS writable,
       CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier FROM pg_control_system()) END AS system_identifier,
       current_database() AS database
"""


@dataclass(frozen=True)
class Access:
    schema_exists: bool
    usage: bool
    readable: int
    relations: int
    can_create: bool
    superuser: bool
    writable: list[str]
    system_identifier: int | None
    database: str


async def access(conn: asyncpg.Connection, schema: str) -> Access:
    """What the account may do in the dataset (inside a read-only transaction)."""
    async with sandbox.read_only(conn, sandbox.Limits(timeout_s=CONNECT_TIMEOUT_S)):
        row = await conn.fetchrow(ACCESS, schema)
    assert row is not None
    return Access(
        schema_exists=bool(row["schema_exists"]),
        usage=bool(row["usage"]),
        readable=int(row["readable"]),
        relations=int(row["relations"]),
        can_create=bool(row["can_create"]),
        superuser=bool(row["superuser"]),
        writable=list(row["writable"] or []),
        system_identifier=row["system_identifier"],
        database=str(row["database"]),
    )


SYSTEM_IDENTIFIER: Final = "SELECT system_identifier FROM pg_control_system()"


async def is_levered_database(app: Any, remote: Access) -> bool:
    """Whether the target is Levered's own database (same cluster and database name).

    Refused as a connected warehouse: an account there could read other organizations' rows
    or the control plane, which no organization's connection may reach.
    """
    if remote.system_identifier is None:
        return False
    ours = await app.fetchval(SYSTEM_IDENTIFIER)
    return bool(ours == remote.system_identifier and remote.database == await _db_name(app))


async def _db_name(app: Any) -> str:
    return str(await app.fetchval("SELECT current_database()"))


# -- the catalog ------------------------------------------------------------------------------

TABLES: Final = """
SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS description
FROM pg_class c
WHERE c.relnamespace = to_regnamespace(quote_ident($1))
  AND c.relkind IN ('r', 'v', 'm', 'p', 'f') AND has_table_privilege(c.oid, 'SELECT')
ORDER BY c.relname
"""
COLUMNS: Final = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable, col_description(a.attrelid, a.attnum) AS description
FROM pg_attribute a
WHERE a.attrelid = to_regclass(quote_ident($1) || '.' || quote_ident($2)) AND a.attnum > 0
  AND NOT a.attisdropped AND has_table_privilege(a.attrelid, 'SELECT')
ORDER BY a.attnum
"""


async def tables(conn: asyncpg.Connection, schema: str) -> list[asyncpg.Record]:
    """The dataset's tables and views the account may read."""
    async with sandbox.read_only(conn, sandbox.Limits(timeout_s=CONNECT_TIMEOUT_S), schema=schema):
        return list(await conn.fetch(TABLES, schema))


async def columns(conn: asyncpg.Connection, schema: str, table: str) -> list[asyncpg.Record]:
    async with sandbox.read_only(conn, sandbox.Limits(timeout_s=CONNECT_TIMEOUT_S), schema=schema):
        return list(await conn.fetch(COLUMNS, schema, table))


# -- reward rows ------------------------------------------------------------------------------


def rows_sql(
    bound_sql: str,
    anonymous_id_col: str,
    timestamp_col: str,
    value_col: str | None,
    *,
    bool_metric: bool,
    value_is_boolean: bool,
    weights: Callable[[str | None], str] | None = None,
    end: str = "$2",
) -> str:
    """The metric (``@start_date`` already bound to ``$1``) as normalized rows in ``[$1, end]``
    (``end``: the parameter of the upper bound, ``$2`` when the rows are fetched alone).

    The managed warehouse turns a value column into a number with its own function; here the
    column's type, described first, picks the cast (a boolean is 1 or 0). ``weights``: a
    weighted metric's outcome weight given that number (None without a value column); rows
    it gives NULL (no outcome) are dropped.
    """
    q = sandbox.quote_ident
    anon, ts = q(anonymous_id_col), q(timestamp_col)
    where = [
        f"m.{anon} IS NOT NULL",
        f"m.{ts} IS NOT NULL",
        f"m.{ts}::timestamptz >= $1",
        f"m.{ts}::timestamptz <= {end}",
    ]
    number = None
    if value_col is not None:
        column = f"m.{q(value_col)}"
        number = (
            f"(CASE WHEN {column} THEN 1 ELSE 0 END)::double precision"
            if value_is_boolean
            else f"coalesce({column}::double precision, 0)"
        )
    if weights is not None:
        value = weights(number)
        where.append(f"{value} IS NOT NULL")
    elif number is None:
        value = "1::double precision"
    elif bool_metric:
        value = "1::double precision"
        where.append(f"{number} > 0")
    else:
        value = number
    return (
        f'SELECT m.{anon}::text AS anonymous_id, m.{ts}::timestamptz AS "timestamp", '
        f"{value} AS value\nFROM (\n{bound_sql}\n) AS m\nWHERE {' AND '.join(where)}"
    )


async def fetch_rewards(
    conn: asyncpg.Connection,
    sql: str,
    start: datetime,
    end: datetime,
    *,
    schema: str,
    timeout_s: float,
) -> tuple[list[str], list[datetime], list[float]]:
    """The normalized reward rows in ``[start, end]``, as columns (ids, times, values); the
    metric's failures are said as in the managed warehouse (409 ``metric_failed``)."""
    async with sandbox.read_only(conn, sandbox.Limits(timeout_s=timeout_s), schema=schema):
        records = await fetch_metric_query(conn, sql, start, end, timeout_s=timeout_s)
    return (
        [r[0] for r in records],
        [r[1] for r in records],
        [float(r[2]) for r in records],
    )
