"""Wire schemas of the warehouse endpoints (``/api/v2/warehouse``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from levered.schemas.common import ResponseMeta

MAX_SQL_CHARS = 100_000
MAX_QUERY_ROWS = 10_000
MAX_PREVIEW_ROWS = 1_000

Sql = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_SQL_CHARS,
        description="One read-only query (SELECT, WITH … SELECT, VALUES, TABLE) over the "
        "warehouse tables `exposures` and `rewards`.",
    ),
]
QueryLimit = Annotated[
    int,
    msgspec.Meta(ge=1, le=MAX_QUERY_ROWS, description="Return at most this many rows."),
]


class WarehouseSwitch(msgspec.Struct, forbid_unknown_fields=True):
    provider: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=50,
            description="The warehouse to use; only `managed` is supported so far.",
        ),
    ]


class TableInfo(msgspec.Struct, frozen=True):
    name: str
    rows: int | None
    """The organization's rows; null when counting failed (e.g. ran past the timeout)."""
    description: str | None = None


class WarehouseStatus(msgspec.Struct, frozen=True):
    provider: str
    healthy: bool
    """The warehouse answered a query run as the organization."""
    tables: list[TableInfo]
    meta: ResponseMeta


class TableList(msgspec.Struct, frozen=True):
    tables: list[TableInfo]
    meta: ResponseMeta


class ColumnInfo(msgspec.Struct, frozen=True):
    name: str
    type: str
    nullable: bool
    description: str | None = None


class ColumnList(msgspec.Struct, frozen=True):
    table: str
    columns: list[ColumnInfo]
    meta: ResponseMeta


class ResultColumn(msgspec.Struct, frozen=True):
    name: str
    type: str


class QueryRequest(msgspec.Struct, forbid_unknown_fields=True):
    sql: Sql
    limit: QueryLimit = 100


class QueryResult(msgspec.Struct, frozen=True):
    """Rows as arrays in ``columns`` order. Timestamps are ISO 8601 strings, uuids strings,
    jsonb values JSON, numeric values numbers."""

    columns: list[ResultColumn]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    """More rows exist than were returned (``limit`` or the response-size cap was reached)."""
    elapsed_ms: float
    meta: ResponseMeta
