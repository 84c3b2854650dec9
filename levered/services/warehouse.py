"""Warehouse use cases: status, switching provider, the catalog, previews and ad-hoc queries.

Everything an organization reads from the warehouse runs through :mod:`levered.db.sandbox`, as
the organization's own database role: the catalog (tables, columns) is the only thing read with
the app's connection, and it is the same for every organization.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import asyncpg
import msgspec

from levered.db import connected_postgres, connections, native_exposures, sandbox
from levered.db.clickhouse_engine import ClickHouseTarget
from levered.errors import Conflict, NotFound, Unavailable, ValidationError
from levered.schemas.common import ResponseMeta
from levered.schemas.warehouse import (
    ColumnInfo,
    ColumnList,
    ExposureTable,
    QueryRequest,
    QueryResult,
    ResultColumn,
    TableInfo,
    TableList,
    WarehouseStatus,
    WarehouseSwitch,
)
from levered.services import connected, connected_clickhouse
from levered.services.connected import Connected
from levered.services.connected_clickhouse import ClickHouseReader
from levered.services.secret_box import SecretBox

MANAGED: Final = "managed"


SecretSource = Callable[[], SecretBox]
"""Loads the installation's :class:`SecretBox` when a connected warehouse first needs it."""


@dataclass(frozen=True)
class Warehouse:
    """How tenant SQL reaches the warehouse: the app's pool, the limits, where to log in.

    ``dsn`` is the database URL without caring for its credentials (the tenant's replace them);
    None means "where the pool is connected" (:func:`levered.db.sandbox.server_dsn`).
    ``secrets`` opens connected warehouses' passwords (None: none can be connected).
    ``chdb_root`` is where ``chdb://`` data directories may be (None: nowhere).
    """

    pool: asyncpg.Pool
    limits: sandbox.Limits = sandbox.DEFAULT_LIMITS
    dsn: str | None = None
    secrets: SecretSource | None = None
    chdb_root: str | None = None

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Warehouse:
        """From the app state: ``pool``, and optionally ``sandbox_limits``, ``database_url``,
        ``secret_box`` (a :data:`SecretSource`) and ``chdb_root``."""
        return cls(
            state["pool"],
            state.get("sandbox_limits") or sandbox.DEFAULT_LIMITS,
            state.get("database_url"),
            state.get("secret_box"),
            state.get("chdb_root"),
        )

    def box(self) -> SecretBox | None:
        return self.secrets() if self.secrets is not None else None

    @asynccontextmanager
    async def session(self, organization_id: UUID) -> AsyncIterator[asyncpg.Connection]:
        """A connection as the organization to the managed warehouse (else 409: a path not
        ported to connected warehouses fails closed rather than reading empty tables)."""
        async with self._tenant(organization_id, managed_only=True) as conn:
            yield conn

    @asynccontextmanager
    async def exposures_session(self, organization_id: UUID) -> AsyncIterator[asyncpg.Connection]:
        """A connection as the organization to Levered's own store, whatever the warehouse:
        the exposures Levered records stay there when a warehouse is connected."""
        async with self._tenant(organization_id, managed_only=False) as conn:
            yield conn

    @asynccontextmanager
    async def _tenant(
        self, organization_id: UUID, *, managed_only: bool
    ) -> AsyncIterator[asyncpg.Connection]:
        # The app's own connection goes back to the pool as soon as the tenant is logged in,
        # so a slow tenant query never holds one.
        async with AsyncExitStack() as stack:
            async with self.pool.acquire() as admin:
                if managed_only:
                    await require_managed(admin, organization_id)
                conn = await stack.enter_async_context(
                    sandbox.tenant_session(admin, organization_id, dsn=self.dsn)
                )
            yield conn

    async def connected(self, organization_id: UUID) -> Connected | None:
        """The organization's connected warehouse, None on the managed one."""
        async with self.pool.acquire() as admin:
            return await connected.find(admin, self.box, organization_id)

    @asynccontextmanager
    async def reader(self, organization_id: UUID) -> AsyncIterator[Reader | ClickHouseReader]:
        """Where the organization's own SQL runs: its tenant session on the managed warehouse,
        else a session on its connected warehouse (read-only, see :mod:`.connected` and
        :mod:`.connected_clickhouse`)."""
        remote = await self.connected(organization_id)
        if remote is None:
            async with self.session(organization_id) as conn:
                yield Reader(conn, MANAGED_SCHEMA, None)
            return
        if isinstance(remote.target, ClickHouseTarget):
            async with connected_clickhouse.reader(
                remote.target, self.limits, self.chdb_root
            ) as found:
                yield found
            return
        async with connected.session(remote) as conn:
            yield Reader(conn, remote.dataset_id, remote)


MANAGED_SCHEMA: Final = "warehouse"


@dataclass(frozen=True)
class Reader:
    """A session where the organization's SQL runs, and the schema unqualified names are in."""

    conn: asyncpg.Connection
    schema: str
    remote: Connected | None
    """The connected warehouse, or None for the managed one."""


async def require_managed(admin: Any, organization_id: UUID) -> None:
    provider = await sandbox.warehouse_provider(admin, organization_id)
    if provider != MANAGED:
        raise Conflict(
            f"the organization uses the {provider!r} warehouse, and this needs the managed "
            "one (Levered's own store)",
            code="warehouse_not_managed",
        )


async def status(wh: Warehouse, organization_id: UUID, meta: ResponseMeta) -> WarehouseStatus:
    """Provider, whether a query as the organization works, and its tables (with row counts on
    the managed warehouse; a connected one's tables are listed, not counted)."""
    try:
        remote = await wh.connected(organization_id)
    except Conflict as exc:  # not connected, or the secret key changed: say so, do not fail
        async with wh.pool.acquire() as admin:
            provider = await sandbox.warehouse_provider(admin, organization_id)
        return WarehouseStatus(provider or "", False, [], meta, error=exc.message)
    if remote is None:
        try:
            found = await _tables(wh, organization_id)
        except Unavailable as exc:
            return WarehouseStatus(MANAGED, False, [], meta, error=exc.message)
        return WarehouseStatus(MANAGED, True, found, meta)
    found, error = [], None
    try:
        found = await _tables(wh, organization_id)
    except Unavailable as exc:
        error = exc.message
    return WarehouseStatus(
        remote.provider,
        error is None,
        found,
        meta,
        dataset_id=remote.dataset_id,
        connection=remote.info(),
        warnings=remote.warnings,
        error=error,
        exposures=remote.exposures,
    )


async def set_exposures(
    wh: Warehouse, organization_id: UUID, table: ExposureTable | None, meta: ResponseMeta
) -> WarehouseStatus:
    """Name the table of the organization's own exposures in its connected PostgreSQL (checked
    first: the table readable, each mapped column there with a usable type), or with None go
    back to the exposures Levered records. Either way the next pass rebuilds the cells."""
    remote = await wh.connected(organization_id)
    if table is not None:
        if remote is None:
            raise Conflict(
                "the managed warehouse counts the exposures Levered records; connect your "
                "own PostgreSQL first (`levered warehouse connect postgres`), then name the "
                "table of your exposures in it",
                code="warehouse_not_connected",
            )
        if isinstance(remote.target, ClickHouseTarget):
            raise Conflict(
                "a table of your own exposures is read from a connected PostgreSQL only, not "
                "yet from ClickHouse; on ClickHouse, send exposures to Levered (served, or "
                "POST /api/v2/ingest/exposures)",
                code="not_supported",
            )
        async with connected.session(remote) as conn:
            await native_exposures.column_types(conn, remote.dataset_id, table)
    if remote is not None:
        mapping = None if table is None else msgspec.to_builtins(table)
        async with wh.pool.acquire() as admin:
            await connections.set_exposures(admin, organization_id, mapping)
    return await status(wh, organization_id, meta)


async def switch(
    wh: Warehouse, organization_id: UUID, data: WarehouseSwitch, meta: ResponseMeta
) -> WarehouseStatus:
    """Use the managed warehouse, or connect one (tested first: :mod:`.connected`)."""
    async with wh.pool.acquire() as admin:
        if data.provider == MANAGED:
            if data.credentials is not None or data.dataset_id is not None:
                raise ValidationError(
                    "the managed warehouse takes no dataset_id or credentials",
                    details=[{"path": "$.credentials", "message": "not allowed for 'managed'"}],
                )
            await connections.use_managed(admin, organization_id)
        else:
            box = wh.box()
            if box is None:
                raise Conflict("this server has no secret key, so it cannot store a password")
            if data.provider == connected_clickhouse.CLICKHOUSE:
                await connected_clickhouse.connect(admin, box, organization_id, data, wh.chdb_root)
            else:
                await connected.connect_postgres(admin, box, organization_id, data)
    return await status(wh, organization_id, meta)


async def tables(wh: Warehouse, organization_id: UUID, meta: ResponseMeta) -> TableList:
    return TableList(await _tables(wh, organization_id), meta)


async def _tables(wh: Warehouse, organization_id: UUID) -> list[TableInfo]:
    async with wh.reader(organization_id) as reader:
        if isinstance(reader, ClickHouseReader):
            return await connected_clickhouse.tables(reader)
        if reader.remote is not None:
            found = await connected_postgres.tables(reader.conn, reader.schema)
            return [TableInfo(r["name"], None, r["description"]) for r in found]
        async with wh.pool.acquire() as admin:
            descriptions = {t: await sandbox.table_description(admin, t) for t in sandbox.TABLES}
        out: list[TableInfo] = []
        for table in sandbox.TABLES:
            try:
                result = await sandbox.run(
                    reader.conn,
                    f"SELECT count(*) FROM warehouse.{table}",
                    limit=1,
                    limits=wh.limits,
                )
                rows: int | None = int(result.rows[0][0])
            except ValidationError:  # e.g. the count ran past the timeout
                rows = None
            out.append(TableInfo(table, rows, descriptions[table]))
        return out


async def columns(
    wh: Warehouse, organization_id: UUID, table: str, meta: ResponseMeta
) -> ColumnList:
    async with wh.reader(organization_id) as reader:
        found = await _visible_columns(wh, reader, table)
    return ColumnList(table, found, meta)


async def _visible_columns(
    wh: Warehouse, reader: Reader | ClickHouseReader, table: str
) -> list[ColumnInfo]:
    if isinstance(reader, ClickHouseReader):
        return await connected_clickhouse.columns(reader, table)
    if reader.remote is not None:
        records = await connected_postgres.columns(reader.conn, reader.schema, table)
        if not records:
            raise NotFound(
                f"no table or view {table!r} that this account can read in schema {reader.schema!r}"
            )
        return [ColumnInfo(r["name"], r["type"], r["nullable"], r["description"]) for r in records]
    if table not in sandbox.TABLES:
        raise NotFound(f"no warehouse table {table!r}; the tables are {', '.join(sandbox.TABLES)}")
    async with wh.pool.acquire() as admin:
        records = await sandbox.table_columns(admin, table)
    return [
        ColumnInfo(r["name"], r["type"], r["nullable"], r["description"])
        for r in records
        if r["name"] not in sandbox.HIDDEN_COLUMNS
    ]


async def preview(
    wh: Warehouse, organization_id: UUID, table: str, n: int, meta: ResponseMeta
) -> QueryResult:
    """``n`` of the organization's rows of a table, documented columns only (storage order:
    no sort, so a preview of a large table stays cheap)."""
    async with wh.reader(organization_id) as reader:
        if isinstance(reader, ClickHouseReader):
            return to_wire(await connected_clickhouse.preview(reader, table, n), meta)
        visible = await _visible_columns(wh, reader, table)
        select = ", ".join(sandbox.quote_ident(c.name) for c in visible)
        source = f"{sandbox.quote_ident(reader.schema)}.{sandbox.quote_ident(table)}"
        result = await sandbox.run(
            reader.conn,
            f"SELECT {select} FROM {source}",
            limit=n,
            limits=wh.limits,
            schema=reader.schema,
        )
    return to_wire(result, meta)


async def query(
    wh: Warehouse, organization_id: UUID, data: QueryRequest, meta: ResponseMeta
) -> QueryResult:
    """Run one read-only query as the organization (see :mod:`levered.db.sandbox`), or on its
    connected warehouse (read-only session and transaction, same limits)."""
    async with wh.reader(organization_id) as reader:
        if isinstance(reader, ClickHouseReader):
            return to_wire(await connected_clickhouse.query(reader, data.sql, data.limit), meta)
        result = await sandbox.run(
            reader.conn, data.sql, limit=data.limit, limits=wh.limits, schema=reader.schema
        )
    return to_wire(result, meta)


def to_wire(result: sandbox.QueryResult, meta: ResponseMeta) -> QueryResult:
    return QueryResult(
        [ResultColumn(c.name, c.type) for c in result.columns],
        result.rows,
        len(result.rows),
        result.truncated,
        result.elapsed_ms,
        meta,
    )
