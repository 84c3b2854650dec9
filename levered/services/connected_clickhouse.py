"""A connected ClickHouse: connecting one (with its test), and what runs on it.

``chdb:///path`` opens the ClickHouse engine inside the server's own process on a data
directory of the server's machine, so the operator decides which directories may be named:
only those under ``LEVERED_CHDB_ROOT`` (unset: ``chdb://`` is refused), that exist and hold a
ClickHouse store, and each by one organization only (the engine has no users or grants, so a
directory two organizations shared would be readable by both). ``http(s)://`` reaches a
server with the account the organization gives.

A ``PUT`` is stored only after a session on the target found the database and could read its
tables; what then runs there goes through :func:`levered.db.connected_clickhouse.run` (read-only
session, timeout, guard) — the catalog, previews, queries, the metric dry run and the reward
rows of a training pass.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import msgspec

from levered.db import Connection, connections
from levered.db import clickhouse_engine as engine
from levered.db import connected_clickhouse as ch
from levered.db.clickhouse_guard import Refused
from levered.db.sandbox import Column, Limits, QueryResult
from levered.errors import NotFound, Unavailable, ValidationError
from levered.schemas.warehouse import ClickHouseCredentials, ColumnInfo, TableInfo, WarehouseSwitch
from levered.services.secret_box import SecretBox

CLICKHOUSE: Final = "clickhouse"
DATABASE_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
TIMEOUT_CODE: Final = 159
UNKNOWN_DATABASE: Final = 81


@dataclass(frozen=True)
class ClickHouseReader:
    """A session on the organization's ClickHouse and the database its SQL may read."""

    session: engine.Session
    database: str
    limits: Limits


def chdb_directory(url: str, root: str | None) -> Path:
    """The data directory a ``chdb://`` URL names, if the operator allows it (module doc)."""
    if root is None:
        raise ValidationError.at(
            "$.credentials.url",
            "this server allows no in-process ClickHouse (chdb://): its operator sets "
            "LEVERED_CHDB_ROOT to the directory that holds such data directories",
        )
    try:
        path = engine.chdb_path(url)
    except ValueError as exc:
        raise ValidationError.at("$.credentials.url", str(exc)) from exc
    real, allowed = Path(path).resolve(), Path(root).resolve()
    if real == allowed or not real.is_relative_to(allowed):
        raise ValidationError.at(
            "$.credentials.url", f"{path} is not inside this server's LEVERED_CHDB_ROOT"
        )
    if not (real / "metadata").is_dir():
        raise ValidationError.at(
            "$.credentials.url", f"{path} is not a ClickHouse (chdb) data directory"
        )
    return real


def target_of(settings: dict[str, Any], dataset_id: str, password: str) -> engine.ClickHouseTarget:
    return engine.ClickHouseTarget(
        settings["url"], dataset_id, settings.get("username", "default"), password
    )


@asynccontextmanager
async def reader(
    target: engine.ClickHouseTarget, limits: Limits, root: str | None
) -> AsyncIterator[ClickHouseReader]:
    """A read-only session on the target; unreachable → 503 ``warehouse_unavailable``."""
    try:
        if engine.is_chdb(target.url):
            chdb_directory(target.url, root)  # the operator may have narrowed the root since
    except ValidationError as exc:
        raise Unavailable(
            f"the connected ClickHouse warehouse ({target.url}) is no longer allowed on this "
            f"server: {exc.message}",
            code="warehouse_unavailable",
        ) from exc
    try:
        session = await engine.open_session(target, limits.timeout_s)
    except engine.Unreachable as exc:
        raise Unavailable(
            f"the connected ClickHouse warehouse ({target.url}) cannot be reached: "
            f"{exc.reason}; retry later, or check it with `levered warehouse status`",
            code="warehouse_unavailable",
            retry_after=30,
        ) from exc
    try:
        yield ClickHouseReader(session, target.database, limits)
    finally:
        await session.aclose()


async def connect(
    app: Connection,
    box: SecretBox,
    organization_id: UUID,
    data: WarehouseSwitch,
    root: str | None,
) -> None:
    """Test the credentials against the database, then store them (module doc)."""
    if not data.dataset_id or not DATABASE_NAME.match(data.dataset_id):
        raise ValidationError.at(
            "$.dataset_id",
            "required for provider 'clickhouse': the database to read (letters, digits, _)",
        )
    if data.credentials is None:
        raise ValidationError.at("$.credentials", "required for provider 'clickhouse': url")
    try:
        creds = msgspec.convert(data.credentials, ClickHouseCredentials)
    except msgspec.ValidationError as exc:
        raise ValidationError.at("$.credentials", str(exc)) from exc
    url = creds.url
    if engine.is_chdb(url):
        url = f"chdb://{chdb_directory(url, root)}"
        owner = await connections.owner_of_url(app, CLICKHOUSE, url)
        if owner is not None and owner != organization_id:
            raise ValidationError.at(
                "$.credentials.url", "another organization uses this data directory"
            )
    elif not re.match(r"^https?://[^/?#@\s]+:\d{1,5}/?$", url):
        raise ValidationError.at(
            "$.credentials.url", "expected http(s)://host:port, or chdb:///path/to/directory"
        )
    target = engine.ClickHouseTarget(url, data.dataset_id, creds.username, creds.password)
    limits = Limits(timeout_s=engine.CONNECT_TIMEOUT_S)
    try:
        session = await engine.open_session(target, limits.timeout_s)
    except engine.Unreachable as exc:
        raise ValidationError(
            f"could not open {url} as {creds.username!r}: {exc.reason}",
            details=[{"path": "$.credentials.url", "message": exc.reason}],
            code="warehouse_connection_failed",
        ) from exc
    try:
        warnings = await _access(
            ClickHouseReader(session, data.dataset_id, limits),
            data.dataset_id,
            server=not engine.is_chdb(url),
        )
    finally:
        await session.aclose()
    secret = box.seal(creds.password) if creds.password else None
    settings = {"url": url, "username": creds.username}
    await connections.connect(
        app, organization_id, CLICKHOUSE, data.dataset_id, settings, secret, warnings
    )


async def _access(found: ClickHouseReader, database: str, *, server: bool) -> list[str]:
    """The connection test: the database exists and its tables are readable; on a ``server``
    (not chdb, whose in-process engine has no accounts to choose from) a warning when the
    account could also write."""
    try:
        if not await ch.database_exists(found.session, database):
            raise ValidationError.at("$.dataset_id", f"no database {database!r} on this ClickHouse")
        names = [name for name, _, _ in await ch.tables(found.session, database)]
        refused = await ch.unreadable(found.session, database, names)
    except engine.ServerError as exc:
        if exc.code == UNKNOWN_DATABASE:  # the session's default database is the dataset
            raise ValidationError.at(
                "$.dataset_id", f"no database {database!r} on this ClickHouse"
            ) from exc
        raise ValidationError.at(
            "$.credentials", f"the connection test failed: {exc.message}"
        ) from exc
    if names and len(refused) == len(names):
        raise ValidationError.at(
            "$.dataset_id",
            f"this account cannot read the tables of {database!r}: GRANT SELECT ON "
            f"{database}.* to it",
        )
    warnings = []
    if not names:
        warnings.append("the database has no tables or views yet")
    if refused:
        warnings.append(f"cannot read {len(refused)} table(s): {', '.join(refused[:5])}")
    if server:
        warnings.extend(await _write_warning(found.session, database))
    return warnings


async def _write_warning(session: engine.Session, database: str) -> list[str]:
    try:
        grants = await ch.account_write_grants(session, database)
    except engine.ServerError as exc:
        return [f"could not check this account's grants ({exc.message})"]
    if not grants:
        return []
    return [
        f"this account can write ({', '.join(grants[:5])}): Levered only reads, but an "
        f"account with only SELECT ON {database}.* is safer"
    ]


# -- the catalog, previews and queries --------------------------------------------------------


def sql_error(exc: engine.ServerError | Refused, limits: Limits) -> ValidationError:
    """A failed or refused statement as a 400 with ClickHouse's own message."""
    if isinstance(exc, Refused):
        return ValidationError(
            f"the query was refused: {exc.reason}", details={"reason": "not_allowed"}
        )
    headline = exc.message.splitlines()[0] if exc.message else "the query failed"
    if exc.code == TIMEOUT_CODE:
        headline = f"the query ran past the {limits.timeout_s:g} s timeout"
    return ValidationError(
        headline, details={"clickhouse_code": exc.code, "server_message": exc.message}
    )


def catalog_error(exc: engine.ServerError) -> Unavailable:
    """Levered's own catalog query failed: the warehouse is not usable as connected."""
    return Unavailable(
        f"the connected ClickHouse did not answer Levered's catalog query: {exc.message}",
        code="warehouse_unavailable",
        retry_after=30,
    )


async def tables(found: ClickHouseReader) -> list[TableInfo]:
    try:
        listed = await ch.tables(found.session, found.database)
    except engine.ServerError as exc:
        raise catalog_error(exc) from exc
    return [TableInfo(n, r, c) for n, c, r in listed]


async def columns(found: ClickHouseReader, table: str) -> list[ColumnInfo]:
    try:
        described = await ch.columns(found.session, found.database, table)
    except engine.ServerError as exc:
        raise catalog_error(exc) from exc
    if not described:
        raise NotFound(f"no table or view {table!r} in database {found.database!r}")
    return [ColumnInfo(*column) for column in described]


async def query(
    found: ClickHouseReader, sql: str, limit: int, params: dict[str, Any] | None = None
) -> QueryResult:
    """One tenant query (:func:`levered.db.connected_clickhouse.run`), as the sandbox's result."""
    try:
        outcome = await ch.run(
            found.session,
            sql,
            params or {},
            database=found.database,
            limit=limit,
            max_bytes=found.limits.max_bytes,
        )
    except (engine.ServerError, Refused) as exc:
        raise sql_error(exc, found.limits) from exc
    return QueryResult(
        [Column(c.name, c.type, 0) for c in outcome.columns],
        outcome.rows,
        outcome.truncated,
        outcome.elapsed_ms,
    )


async def preview(found: ClickHouseReader, table: str, n: int) -> QueryResult:
    """``n`` rows of a table in storage order, its columns listed (as on the other providers)."""
    names = ", ".join(ch.quote_ident(c.name) for c in await columns(found, table))
    return await query(found, f"SELECT {names} FROM {ch.quote_ident(table)}", n)
