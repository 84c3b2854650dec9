"""``/api/v2/warehouse``: status, provider switch, tables, columns, previews and queries.

Everything is scoped to the caller's organization; queries run as its database role
(:mod:`levered.db.sandbox`). Limits and the database URL for those logins come from app state
(``sandbox_limits``, ``database_url``) when set, else the defaults.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from levered.schemas.warehouse import (
    MAX_PREVIEW_ROWS,
    ColumnList,
    ExposureTable,
    QueryRequest,
    QueryResult,
    TableList,
    WarehouseStatus,
    WarehouseSwitch,
)
from levered.server.envelope import meta
from levered.services import warehouse as service
from levered.services.auth import Principal

PreviewRows = Annotated[
    int, Parameter(ge=1, le=MAX_PREVIEW_ROWS, description=f"Rows to show, 1–{MAX_PREVIEW_ROWS}.")
]


def warehouse_of(request: Request[Any, Any, Any]) -> service.Warehouse:
    return service.Warehouse.from_state(request.app.state)


class WarehouseController(Controller):
    path = "/api/v2/warehouse"
    tags = ("warehouse",)

    @get(summary="Warehouse provider, health, and its tables with the organization's row counts.")
    async def show(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> WarehouseStatus:
        org = principal.organization_id
        return await service.status(warehouse_of(request), org, meta(request, org))

    @put(summary="Switch the organization's warehouse (only `managed` is supported so far).")
    async def switch(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[WarehouseSwitch],
    ) -> WarehouseStatus:
        org = principal.organization_id
        return await service.switch(warehouse_of(request), org, data, meta(request, org))

    @put(
        "/exposures",
        summary="Count exposures from a table of your own in the connected PostgreSQL.",
        description="Names a table or view of the connected schema and which of its columns "
        "hold the anonymous id, optimization id, variant, timestamp and, optionally, context "
        "and holdout. Checked before it is stored (the table readable, each column present "
        "with a usable type: 400 naming the field otherwise). From then on training reads "
        "exposures from that table alone, inside your database, and the next pass rebuilds "
        "every optimization's cells. 409 on the managed warehouse and on ClickHouse.",
    )
    async def set_exposures(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[ExposureTable],
    ) -> WarehouseStatus:
        org = principal.organization_id
        return await service.set_exposures(warehouse_of(request), org, data, meta(request, org))

    @delete(
        "/exposures",
        status_code=200,
        summary="Count the exposures Levered records again, not a table of your own.",
    )
    async def clear_exposures(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> WarehouseStatus:
        org = principal.organization_id
        return await service.set_exposures(warehouse_of(request), org, None, meta(request, org))

    @get("/tables", summary="The tables metric SQL and queries can read, with row counts.")
    async def tables(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> TableList:
        org = principal.organization_id
        return await service.tables(warehouse_of(request), org, meta(request, org))

    @get("/tables/{table:str}/columns", summary="A table's documented columns and their types.")
    async def columns(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        table: FromPath[str],
    ) -> ColumnList:
        org = principal.organization_id
        return await service.columns(warehouse_of(request), org, table, meta(request, org))

    @get("/tables/{table:str}/preview", summary="A few of the organization's rows of a table.")
    async def preview(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        table: FromPath[str],
        n: PreviewRows = 10,
    ) -> QueryResult:
        org = principal.organization_id
        return await service.preview(warehouse_of(request), org, table, n, meta(request, org))

    @post(
        "/query",
        status_code=200,
        summary="Run one read-only query as the organization (timeout, row and size caps).",
        description="400 with the SQLSTATE in `details` when the database refuses or the query "
        "fails (writes, privileges, several statements, timeout, syntax). `truncated` says "
        "more rows existed than were returned.",
    )
    async def query(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[QueryRequest],
    ) -> QueryResult:
        org = principal.organization_id
        return await service.query(warehouse_of(request), org, data, meta(request, org))
