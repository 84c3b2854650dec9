"""Metrics: named SQL over the warehouse that returns reward events.

A metric's SQL is the organization's own, so it only ever runs in the sandbox
(:mod:`levered.db.sandbox`): read-only, as the organization's database role, with a timeout.

``@start_date``
    Replaced by the bound parameter ``$1`` (``($1::timestamptz)``, so it has a type wherever it
    appears): the start of the training window at training time, 0001-01-01 for previews,
    a day ago for the dry run on save.

Normalized rows (:func:`metric_rows_sql`)
    Whatever the metric's columns are called, training and previews read
    ``anonymous_id text, timestamp timestamptz, value double precision``, with rows before
    ``$1`` and rows without an id or timestamp dropped. ``value`` is 1 for a ``bool`` metric
    (any row is a conversion; with a value column, only rows whose value is true or > 0 are
    kept), the value (NULL → 0) for a ``numeric`` one, and the weight of the matched outcome
    for a ``weighted`` one (rows matching no outcome dropped: :mod:`levered.services.outcomes`).

Deleting
    ``optimizations.reward_metric_id`` references the metric with ``ON DELETE RESTRICT``, and an
    optimization keeps its metric for good (it is part of its results, even when completed or
    archived). So a metric cannot be deleted while *any* optimization references it: 409 naming
    them, whatever their status.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol
from uuid import UUID

import asyncpg
import msgspec

from levered.db import connected_postgres, sandbox
from levered.db import metrics as db
from levered.errors import Conflict, NotFound, ValidationError
from levered.schemas.common import ResponseMeta
from levered.schemas.metrics import (
    Metric,
    MetricCreate,
    MetricDeleted,
    MetricList,
    MetricPreview,
    MetricResponse,
    MetricRow,
    Outcome,
)
from levered.services import clickhouse_metrics, outcomes
from levered.services.connected_clickhouse import ClickHouseReader
from levered.services.warehouse import Reader, Warehouse

START_DATE: Final = re.compile(r"@start_date\b", re.IGNORECASE)
START_DATE_PARAM: Final = "($1::timestamptz)"
PREVIEW_SINCE: Final = datetime(1, 1, 1, tzinfo=UTC)
DRY_RUN_WINDOW: Final = timedelta(days=1)
END_OF_TIME: Final = datetime(9999, 12, 31, tzinfo=UTC)
"""The end bound of a connected warehouse's rows when nothing bounds them (previews)."""
BOOL_OID: Final = 16

# Type OIDs a metric column may have (pg_type.oid; stable across PostgreSQL versions).
ID_TYPES: Final = {
    25: "text",
    1043: "character varying",
    1042: "character",
    19: "name",
    2950: "uuid",
}
TIME_TYPES: Final = {
    1184: "timestamp with time zone",
    1114: "timestamp without time zone",
    1082: "date",
}
VALUE_TYPES: Final = {
    21: "smallint",
    23: "integer",
    20: "bigint",
    700: "real",
    701: "double precision",
    1700: "numeric",
    16: "boolean",
}


class MetricDefinition(Protocol):
    """What :func:`metric_rows_sql` needs of a metric (a :class:`Metric` or a create body)."""

    @property
    def sql(self) -> str: ...
    @property
    def anonymous_id_col(self) -> str: ...
    @property
    def timestamp_col(self) -> str: ...
    @property
    def value_col(self) -> str | None: ...
    @property
    def reward_type(self) -> str | None: ...
    @property
    def outcomes(self) -> Sequence[Outcome] | None: ...
    @property
    def name_col(self) -> str | None: ...


def bind_start_date(sql: str) -> str:
    """The metric SQL with ``@start_date`` as the bound parameter ``$1`` and a trailing ``;``
    removed (it is embedded as a subquery)."""
    return START_DATE.sub(START_DATE_PARAM, sql).rstrip().rstrip(";").rstrip()


def metric_rows_sql(metric: MetricDefinition, start_date: datetime) -> tuple[str, list[Any]]:
    """The metric as normalized rows ``(anonymous_id text, timestamp timestamptz, value float8)``
    since ``start_date``, as ``(sql, params)``.

    The SQL takes exactly one parameter, ``$1`` (timestamptz, the start of the window, which is
    what ``@start_date`` is bound to as well); rows before it are dropped. Run it as the
    organization: :func:`levered.db.sandbox.run`, or embedded in a larger query on a
    :func:`levered.db.sandbox.tenant_session` connection, whose own parameters then start at
    ``$2``. ``warehouse.reward_value`` (migration 0004) turns a boolean or numeric value column
    into a number.
    """
    q = sandbox.quote_ident
    anon, ts = q(metric.anonymous_id_col), q(metric.timestamp_col)
    where = [f"m.{anon} IS NOT NULL", f"m.{ts} IS NOT NULL", f"m.{ts}::timestamptz >= $1"]
    if metric.outcomes:
        value = outcomes.weight_sql(
            metric.outcomes,
            None if metric.name_col is None else f"m.{q(metric.name_col)}::text",
            None
            if metric.value_col is None
            else f"warehouse.reward_value(m.{q(metric.value_col)})",
        )
        where.append(f"{value} IS NOT NULL")
    elif metric.value_col is None:
        value = "1::double precision"
    else:
        number = f"warehouse.reward_value(m.{q(metric.value_col)})"
        if reward_type_of(metric) == "bool":
            value = "1::double precision"
            where.append(f"{number} > 0")
        else:
            value = number
    # The newline before ")" keeps a trailing "-- comment" of the metric SQL from eating it.
    sql = (
        f'SELECT m.{anon}::text AS anonymous_id, m.{ts}::timestamptz AS "timestamp", '
        f"{value} AS value\nFROM (\n{bind_start_date(metric.sql)}\n) AS m\n"
        f"WHERE {' AND '.join(where)}"
    )
    return sql, [start_date]


def _rows_for(
    reader: Reader,
    metric: MetricDefinition,
    start: datetime,
    columns: list[sandbox.Column] | None,
) -> tuple[str, list[Any]]:
    """The normalized rows since ``start`` in the reader's dialect, as ``(sql, params)``."""
    if reader.remote is None:
        return metric_rows_sql(metric, start)
    return connected_rows_sql(metric, columns or []), [start, END_OF_TIME]


def connected_rows_sql(
    metric: MetricDefinition, columns: list[sandbox.Column], end: str = "$2"
) -> str:
    """The metric as normalized rows in ``[$1, end]`` on a connected PostgreSQL; ``columns``
    are the metric query's result columns (:func:`metric_columns`), which pick the value cast."""
    boolean = metric.value_col is not None and any(
        c.name == metric.value_col and c.type_oid == BOOL_OID for c in columns
    )
    declared = metric.outcomes
    name_col = metric.name_col
    weights = None
    if declared:

        def weights(number: str | None) -> str:
            name = None if name_col is None else f"m.{sandbox.quote_ident(name_col)}::text"
            return outcomes.weight_sql(declared, name, number)

    return connected_postgres.rows_sql(
        bind_start_date(metric.sql),
        metric.anonymous_id_col,
        metric.timestamp_col,
        metric.value_col,
        bool_metric=reward_type_of(metric) == "bool",
        value_is_boolean=boolean,
        weights=weights,
        end=end,
    )


async def metric_columns(reader: Reader, metric: MetricDefinition) -> list[sandbox.Column]:
    """The result columns of the metric's query (described, not run)."""
    bound = bind_start_date(metric.sql)
    async with sandbox.read_only(reader.conn, sandbox.Limits(), schema=reader.schema):
        _, columns = await sandbox.describe(
            reader.conn, bound, parameters=1 if START_DATE_PARAM in bound else 0
        )
    return columns


def reward_type_of(metric: MetricDefinition) -> str:
    if metric.reward_type is not None:
        return metric.reward_type
    if metric.outcomes:
        return "weighted"
    return "bool" if metric.value_col is None else "numeric"


def _metric(record: asyncpg.Record) -> dict[str, Any]:
    fields = {name: record[name] for name in Metric.__struct_fields__}
    if fields["outcomes"] is not None:
        fields["outcomes"] = msgspec.convert(fields["outcomes"], list[Outcome])
    return fields


async def create_metric(
    wh: Warehouse, organization_id: UUID, data: MetricCreate, meta: ResponseMeta
) -> MetricResponse:
    """Check the SQL by running it (dry run, as the organization), then store the metric."""
    outcomes.check(data)
    reward_type = reward_type_of(data)
    if reward_type == "numeric" and data.value_col is None:
        raise ValidationError(
            "a numeric metric needs value_col: the column whose values are summed",
            details=[{"path": "$.value_col", "message": "required when reward_type is numeric"}],
        )
    async with wh.reader(organization_id) as reader:
        if isinstance(reader, ClickHouseReader):
            await clickhouse_metrics.dry_run(reader, data, reward_type)
        else:
            await _dry_run(wh, reader, data)
    async with wh.pool.acquire() as admin:
        record = await db.insert_metric(
            admin,
            organization_id,
            data.name,
            data.sql,
            data.anonymous_id_col,
            data.timestamp_col,
            data.value_col,
            reward_type,
            None if data.outcomes is None else msgspec.to_builtins(data.outcomes),
            data.name_col,
        )
    return MetricResponse(**_metric(record), meta=meta)


async def _dry_run(wh: Warehouse, reader: Reader, data: MetricCreate) -> None:
    """The SQL run as written, its columns checked, then run as training embeds it."""
    since = datetime.now(UTC) - DRY_RUN_WINDOW
    # 1. The SQL as written (errors and positions are about the user's text) ...
    alone = bind_start_date(data.sql)
    try:
        result = await sandbox.run(
            reader.conn,
            alone,
            [since] if START_DATE_PARAM in alone else [],
            limit=1,
            limits=wh.limits,
            schema=reader.schema,
        )
    except ValidationError as exc:
        raise _about_sql(exc) from exc
    _check_columns(result.columns, data)
    # 2. ... then as training embeds it.
    sql, params = _rows_for(reader, data, since, result.columns)
    try:
        await sandbox.run(reader.conn, sql, params, limit=1, limits=wh.limits, schema=reader.schema)
    except ValidationError as exc:
        raise _about_sql(exc, wrapped=True) from exc


def _check_columns(columns: list[sandbox.Column], data: MetricCreate) -> None:
    """The named columns exist once each in the result, with fitting types."""
    names = [c.name for c in columns]
    wanted = [
        ("anonymous_id_col", data.anonymous_id_col, ID_TYPES, "text, varchar or uuid"),
        ("timestamp_col", data.timestamp_col, TIME_TYPES, "timestamptz, timestamp or date"),
    ]
    if data.value_col is not None:
        wanted.append(("value_col", data.value_col, VALUE_TYPES, "a number or a boolean"))
    if data.name_col is not None:
        wanted.append(("name_col", data.name_col, ID_TYPES, "text or varchar"))
    for field, name, allowed, expected in wanted:
        matches = [c for c in columns if c.name == name]
        if not matches:
            similar = [n for n in names if n.lower() == name.lower()]
            hint = f" (did you mean {similar[0]!r}? names are case-sensitive)" if similar else ""
            raise _column_problem(
                field,
                name,
                f"is not a column of the query's result{hint}; it returns "
                + ", ".join(repr(n) for n in names),
                names,
            )
        if len(matches) > 1:
            raise _column_problem(
                field,
                name,
                f"appears {len(matches)} times in the result; alias the columns apart",
                names,
            )
        column = matches[0]
        if column.type_oid not in allowed:
            raise _column_problem(
                field,
                name,
                f"has type {column.type}, expected {expected} "
                f"(cast it in the SQL, e.g. {name}::text)"
                if field in ("anonymous_id_col", "name_col")
                else f"has type {column.type}, expected {expected}",
                names,
            )


def _column_problem(field: str, name: str, problem: str, names: list[str]) -> ValidationError:
    message = f"{field} {name!r} {problem}"
    return ValidationError(
        message, details=[{"path": f"$.{field}", "message": message, "columns": names}]
    )


def _about_sql(exc: ValidationError, *, wrapped: bool = False) -> ValidationError:
    """The sandbox's error, said to be about the metric's ``sql``.

    ``wrapped``: the failing statement was the metric embedded as a subquery
    (:func:`metric_rows_sql`), so a position would point into our wrapper, not the user's SQL.
    """
    details = dict(exc.details) if isinstance(exc.details, dict) else {}
    message = exc.message
    if wrapped:
        details.pop("position", None)
        if details.get("sqlstate") == "42601":
            message += (
                " (the metric SQL runs as a subquery: it must be a query (SELECT, WITH … "
                "SELECT, VALUES) with nothing after a final ';', not even a comment)"
            )
    return ValidationError(
        f"the metric SQL failed its dry run: {message}", details={"path": "$.sql", **details}
    )


async def list_metrics(
    wh: Warehouse, organization_id: UUID, limit: int, meta: ResponseMeta
) -> MetricList:
    async with wh.pool.acquire() as admin:
        records = await db.list_metrics(admin, organization_id, limit)
    return MetricList([Metric(**_metric(r)) for r in records], meta)


async def get_metric(
    wh: Warehouse, organization_id: UUID, metric_id: UUID, meta: ResponseMeta
) -> MetricResponse:
    return MetricResponse(**_metric(await _find(wh, organization_id, metric_id)), meta=meta)


async def _find(wh: Warehouse, organization_id: UUID, metric_id: UUID) -> asyncpg.Record:
    async with wh.pool.acquire() as admin:
        record = await db.get_metric(admin, organization_id, metric_id)
    if record is None:
        raise NotFound(f"no metric {metric_id}")
    return record


async def preview_metric(
    wh: Warehouse, organization_id: UUID, metric_id: UUID, limit: int, meta: ResponseMeta
) -> MetricPreview:
    """Run the metric over all time and show its newest normalized rows."""
    metric = Metric(**_metric(await _find(wh, organization_id, metric_id)))
    async with wh.reader(organization_id) as reader:
        if isinstance(reader, ClickHouseReader):
            found, truncated, elapsed_ms = await clickhouse_metrics.preview(
                reader, metric, reward_type_of(metric), limit
            )
            return MetricPreview(metric.id, found, len(found), truncated, elapsed_ms, meta)
        try:
            columns = None if reader.remote is None else await metric_columns(reader, metric)
            rows_sql, params = _rows_for(reader, metric, PREVIEW_SINCE, columns)
            sql = f'SELECT * FROM ({rows_sql}\n) AS r ORDER BY "timestamp" DESC'
            result = await sandbox.run(
                reader.conn, sql, params, limit=limit, limits=wh.limits, schema=reader.schema
            )
        except ValidationError as exc:
            raise _about_sql(exc, wrapped=True) from exc
    rows = [MetricRow(str(a), datetime.fromisoformat(t), float(v)) for a, t, v in result.rows]
    return MetricPreview(metric.id, rows, len(rows), result.truncated, result.elapsed_ms, meta)


async def delete_metric(
    wh: Warehouse, organization_id: UUID, metric_id: UUID, meta: ResponseMeta
) -> MetricDeleted:
    async with wh.pool.acquire() as admin, admin.transaction():
        if await db.get_metric(admin, organization_id, metric_id) is None:
            raise NotFound(f"no metric {metric_id}")
        linked = await db.linked_optimizations(admin, organization_id, metric_id)
        if linked:
            raise _in_use(metric_id, linked)
        try:
            async with admin.transaction():
                await db.delete_metric(admin, organization_id, metric_id)
        except asyncpg.ForeignKeyViolationError:
            linked = await db.linked_optimizations(admin, organization_id, metric_id)
            raise _in_use(metric_id, linked) from None
    return MetricDeleted(metric_id, True, meta)


def _in_use(metric_id: UUID, linked: list[asyncpg.Record]) -> Conflict:
    names = ", ".join(f"{r['name']!r} ({r['status']})" for r in linked) or "a new optimization"
    return Conflict(
        f"metric {metric_id} is the reward metric of {names}; an optimization keeps its metric "
        "even when completed or archived, so this metric cannot be deleted",
        code="metric_in_use",
        details=[{"id": str(r["id"]), "name": r["name"], "status": r["status"]} for r in linked],
    )
