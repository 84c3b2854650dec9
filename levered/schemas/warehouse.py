"""Wire schemas of the warehouse endpoints (``/api/v2/warehouse``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

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
        Literal["managed", "postgres", "clickhouse"],
        msgspec.Meta(
            description="The warehouse to use: `managed` (Levered's own), `postgres` (your "
            "own PostgreSQL) or `clickhouse` (a ClickHouse server, or the in-process engine "
            "on a data directory of this server); read-only to Levered, tested before it is "
            "stored.",
        ),
    ]
    dataset_id: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=63,
                description="`postgres`: the schema holding your tables (e.g. `analytics`); "
                "`clickhouse`: the database.",
            ),
        ]
        | None
    ) = None
    credentials: (
        Annotated[
            dict[str, Any],
            msgspec.Meta(
                description="`postgres`: `host`, `port` (5432), `database`, `username`, "
                "`password`, `sslmode` (`prefer`). `clickhouse`: `url` (`http(s)://host:port` "
                "or `chdb:///path`), `username` (`default`), `password`. The password is "
                "stored encrypted and never returned."
            ),
        ]
        | None
    ) = None


Name63 = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
"""libpq's ``sslmode`` values (asyncpg takes them as they are)."""


class PostgresCredentials(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How Levered logs in to a connected PostgreSQL (``credentials`` of a ``postgres`` PUT)."""

    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    database: Name63
    username: Name63
    password: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 5432
    sslmode: SslMode = "prefer"


class ClickHouseCredentials(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How Levered reaches a connected ClickHouse (``credentials`` of a ``clickhouse`` PUT):
    ``http(s)://host:port`` for a server or cluster, ``chdb:///path`` for the engine in this
    server's process on a data directory under ``LEVERED_CHDB_ROOT``."""

    url: Annotated[str, msgspec.Meta(min_length=8, max_length=1024)]
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "default"
    password: Annotated[str, msgspec.Meta(max_length=1024)] = ""


Column = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]


class ExposureColumns(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Which column of your exposures table holds what Levered needs of an exposure."""

    anonymous_id: Annotated[
        Column, msgspec.Meta(description="The user, as your metrics' anonymous id column.")
    ]
    optimization_id: Annotated[
        Column, msgspec.Meta(description="The optimization's id (`uuid`, or text holding it).")
    ]
    variant: Annotated[
        Column,
        msgspec.Meta(
            description="What was shown: a JSON object of factor → level (`json`, `jsonb` or "
            "text), as the ingestion API takes it, or the variant number (an integer)."
        ),
    ]
    timestamp: Annotated[
        Column,
        msgspec.Meta(
            description="When it was shown: `timestamptz`, `timestamp` (read as UTC) or `date`."
        ),
    ]
    context: (
        Annotated[
            Column,
            msgspec.Meta(description="A JSON object of context values; none: no context."),
        ]
        | None
    ) = None
    holdout: (
        Annotated[
            Column,
            msgspec.Meta(
                description="`boolean`, true for holdout users; none: no holdout, so no "
                "measured lift."
            ),
        ]
        | None
    ) = None


class ExposureTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A table (or view) of your own exposures in the connected warehouse, read in place."""

    table: Annotated[
        Name63,
        msgspec.Meta(description="A table or view in the connected schema (`dataset_id`)."),
    ]
    columns: ExposureColumns


class ConnectionInfo(msgspec.Struct, frozen=True):
    """A connected warehouse's settings as ``GET`` shows them: never the password."""

    host: str
    port: int
    database: str
    username: str
    sslmode: str
    password_set: bool
    tested_at: datetime
    url: str | None = None
    """A ClickHouse connection's URL (its host, port and database are repeated above)."""


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
    dataset_id: str | None = None
    """A connected warehouse's schema; null on the managed warehouse."""
    connection: ConnectionInfo | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    """What the connection test found worth knowing (e.g. the account can write)."""
    error: str | None = None
    """Why the warehouse did not answer (when ``healthy`` is false)."""
    exposures: ExposureTable | None = None
    """The table of your own exposures training reads; null: the exposures Levered records."""


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
