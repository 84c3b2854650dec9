"""Warehouse use cases: status, switching provider, the catalog, previews and ad-hoc queries.

Everything an organization reads from the warehouse runs through :mod:`levered.db.sandbox`, as
the organization's own database role: the catalog (tables, columns) is the only thing read with
the app's connection, and it is the same for every organization.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import asyncpg

from levered.db import sandbox
from levered.errors import Conflict, NotFound, Unavailable, ValidationError
from levered.schemas.common import ResponseMeta
from levered.schemas.warehouse import (
    ColumnInfo,
    ColumnList,
    QueryRequest,
    QueryResult,
    ResultColumn,
    TableInfo,
    TableList,
    WarehouseStatus,
    WarehouseSwitch,
)

MANAGED: Final = "managed"
SUPPORTED_PROVIDERS: Final = (MANAGED,)


@dataclass(frozen=True)
class Warehouse:
    """How tenant SQL reaches the warehouse: the app's pool, the limits, where to log in.

    ``dsn`` is the database URL without caring for its credentials (the tenant's replace them);
    None means "where the pool is connected" (:func:`levered.db.sandbox.server_dsn`).
    """

    pool: asyncpg.Pool
    limits: sandbox.Limits = sandbox.DEFAULT_LIMITS
    dsn: str | None = None

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Warehouse:
        """From the app state: ``pool``, and optionally ``sandbox_limits`` and ``database_url``."""
        return cls(
            state["pool"],
            state.get("sandbox_limits") or sandbox.DEFAULT_LIMITS,
            state.get("database_url"),
        )

    @asynccontextmanager
    async def session(self, organization_id: UUID) -> AsyncIterator[asyncpg.Connection]:
        """A connection as the organization (managed warehouse only, else 409).

        The app's own connection goes back to the pool as soon as the tenant is logged in, so
        a slow tenant query never holds one.
        """
        async with AsyncExitStack() as stack:
            async with self.pool.acquire() as admin:
                await require_managed(admin, organization_id)
                conn = await stack.enter_async_context(
                    sandbox.tenant_session(admin, organization_id, dsn=self.dsn)
                )
            yield conn


async def require_managed(admin: Any, organization_id: UUID) -> None:
    provider = await sandbox.warehouse_provider(admin, organization_id)
    if provider != MANAGED:
        raise Conflict(
            f"the organization uses the {provider!r} warehouse, which Levered cannot query yet; "
            'switch to the managed warehouse with PUT /api/v2/warehouse {"provider": "managed"}',
            code="warehouse_not_managed",
        )


async def status(wh: Warehouse, organization_id: UUID, meta: ResponseMeta) -> WarehouseStatus:
    """Provider, whether a query as the organization works, and its tables with row counts."""
    async with wh.pool.acquire() as admin:
        provider = await sandbox.warehouse_provider(admin, organization_id)
    if provider != MANAGED:
        return WarehouseStatus(provider or "", False, [], meta)
    try:
        tables = await _tables(wh, organization_id)
    except Unavailable:
        return WarehouseStatus(provider, False, [], meta)
    return WarehouseStatus(provider, True, tables, meta)


async def switch(
    wh: Warehouse, organization_id: UUID, data: WarehouseSwitch, meta: ResponseMeta
) -> WarehouseStatus:
    if data.provider not in SUPPORTED_PROVIDERS:
        raise ValidationError(
            f"warehouse provider {data.provider!r} is not supported yet; only 'managed' is",
            details=[{"path": "$.provider", "message": "not supported yet"}],
        )
    async with wh.pool.acquire() as admin:
        await sandbox.set_warehouse_provider(admin, organization_id, data.provider)
    return await status(wh, organization_id, meta)


async def tables(wh: Warehouse, organization_id: UUID, meta: ResponseMeta) -> TableList:
    return TableList(await _tables(wh, organization_id), meta)


async def _tables(wh: Warehouse, organization_id: UUID) -> list[TableInfo]:
    async with wh.pool.acquire() as admin:
        descriptions = {t: await sandbox.table_description(admin, t) for t in sandbox.TABLES}
    out: list[TableInfo] = []
    async with wh.session(organization_id) as conn:
        for table in sandbox.TABLES:
            try:
                result = await sandbox.run(
                    conn, f"SELECT count(*) FROM warehouse.{table}", limit=1, limits=wh.limits
                )
                rows: int | None = int(result.rows[0][0])
            except ValidationError:  # e.g. the count ran past the timeout
                rows = None
            out.append(TableInfo(table, rows, descriptions[table]))
    return out


async def columns(
    wh: Warehouse, organization_id: UUID, table: str, meta: ResponseMeta
) -> ColumnList:
    found = await _visible_columns(wh, organization_id, table)
    return ColumnList(table, found, meta)


async def _visible_columns(wh: Warehouse, organization_id: UUID, table: str) -> list[ColumnInfo]:
    if table not in sandbox.TABLES:
        raise NotFound(f"no warehouse table {table!r}; the tables are {', '.join(sandbox.TABLES)}")
    async with wh.pool.acquire() as admin:
        await require_managed(admin, organization_id)
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
    visible = await _visible_columns(wh, organization_id, table)
    select = ", ".join(sandbox.quote_ident(c.name) for c in visible)
    async with wh.session(organization_id) as conn:
        result = await sandbox.run(
            conn, f"SELECT {select} FROM warehouse.{table}", limit=n, limits=wh.limits
        )
    return to_wire(result, meta)


async def query(
    wh: Warehouse, organization_id: UUID, data: QueryRequest, meta: ResponseMeta
) -> QueryResult:
    """Run one read-only query as the organization (see :mod:`levered.db.sandbox`)."""
    async with wh.session(organization_id) as conn:
        result = await sandbox.run(conn, data.sql, limit=data.limit, limits=wh.limits)
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
