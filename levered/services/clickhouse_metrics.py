"""Metrics on a connected ClickHouse: the dry run on save, the preview, the training rows.

The metric SQL is written in ClickHouse's dialect over the organization's own tables, e.g.
``SELECT user_id, ts, amount FROM purchases WHERE ts >= @start_date AND NOT refunded``;
``@start_date`` is the parameter ``{start_date:DateTime64(6, 'UTC')}``. It always runs through
the guarded path (:func:`levered.db.connected_clickhouse.run` / ``fetch_rewards``), like any
other tenant SQL. The column checks are those of the other providers, with ClickHouse's types.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from levered.db import clickhouse_engine as engine
from levered.db import connected_clickhouse as ch
from levered.db.clickhouse_guard import Refused
from levered.errors import ValidationError
from levered.schemas.metrics import MetricRow, NameMatch, Outcome
from levered.services.connected_clickhouse import ClickHouseReader, sql_error

DRY_RUN_WINDOW: Final = timedelta(days=1)
BEGINNING: Final = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_TIME: Final = datetime(2299, 12, 31, tzinfo=UTC)
"""The bounds of a preview (``DateTime64(6)`` reaches 2299)."""

_WRAPPERS: Final = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")
ID_TYPES: Final = re.compile(r"^(String|FixedString\(\d+\)|UUID)$")
TIME_TYPES: Final = re.compile(r"^(Date|Date32|DateTime(\(.*\))?|DateTime64\(.*\))$")
VALUE_TYPES: Final = re.compile(r"^(U?Int(8|16|32|64|128|256)|Float(32|64)|Decimal.*|Bool)$")


class MetricSql(Protocol):
    @property
    def sql(self) -> str: ...
    @property
    def outcomes(self) -> Sequence[Outcome] | None: ...
    @property
    def name_col(self) -> str | None: ...
    @property
    def anonymous_id_col(self) -> str: ...
    @property
    def timestamp_col(self) -> str: ...
    @property
    def value_col(self) -> str | None: ...


def rows_sql(metric: MetricSql, reward_type: str) -> str:
    """The metric as normalized rows in ``[start_date, end_date]`` (ClickHouse dialect)."""
    declared = metric.outcomes
    name_col = metric.name_col
    weights = None
    if declared:

        def weights(number: str | None) -> str:
            name = None if name_col is None else f"toString(m.{ch.quote_ident(name_col)})"
            return weight_sql(declared, name, number)

    return ch.rows_sql(
        ch.bind_start_date(metric.sql),
        metric.anonymous_id_col,
        metric.timestamp_col,
        metric.value_col,
        bool_metric=reward_type == "bool",
        weights=weights,
    )


def weight_sql(outcomes: Sequence[Outcome], name: str | None, value: str | None) -> str:
    """The weight of the outcome a row matches, NULL when it matches none: the rule of
    :func:`levered.services.outcomes.weight_sql`, in ClickHouse's dialect."""
    whens = []
    for outcome in outcomes:
        if isinstance(outcome.match, NameMatch):
            assert name is not None
            test = f"{name} = {ch.string_literal(outcome.match.value)}"
        else:
            assert value is not None
            test = f"{value} = {ch.float_literal(outcome.match.value)}"
        whens.append(f"WHEN {test} THEN {ch.float_literal(outcome.weight)}")
    return f"(CASE {' '.join(whens)} END)"


def _base(type_name: str) -> str:
    while found := _WRAPPERS.match(type_name):
        type_name = found.group(1)
    return type_name


async def dry_run(found: ClickHouseReader, metric: MetricSql, reward_type: str) -> None:
    """Run the SQL as written (one row), check its columns, then run it as training will."""
    wrapped = rows_sql(metric, reward_type)
    since = datetime.now(UTC) - DRY_RUN_WINDOW
    alone = ch.bind_start_date(metric.sql)
    try:
        result = await ch.run(
            found.session,
            alone,
            ch.time_params(alone, since),
            database=found.database,
            limit=1,
            max_bytes=found.limits.max_bytes,
        )
    except (engine.ServerError, Refused) as exc:
        raise _about_sql(sql_error(exc, found.limits)) from exc
    _check_columns({c.name: _base(c.type) for c in result.columns}, metric)
    try:
        await ch.run(
            found.session,
            wrapped,
            ch.time_params(wrapped, since, datetime.now(UTC)),
            database=found.database,
            limit=1,
            max_bytes=found.limits.max_bytes,
        )
    except (engine.ServerError, Refused) as exc:
        raise _about_sql(sql_error(exc, found.limits)) from exc


def _check_columns(types: dict[str, str], metric: MetricSql) -> None:
    wanted = [
        ("anonymous_id_col", metric.anonymous_id_col, ID_TYPES, "String or UUID"),
        ("timestamp_col", metric.timestamp_col, TIME_TYPES, "DateTime, DateTime64 or Date"),
    ]
    if metric.value_col is not None:
        wanted.append(("value_col", metric.value_col, VALUE_TYPES, "a number or a Bool"))
    if metric.name_col is not None:
        wanted.append(("name_col", metric.name_col, ID_TYPES, "String"))
    for field, name, allowed, expected in wanted:
        if name not in types:
            message = (
                f"{field} {name!r} is not a column of the query's result; it returns "
                + ", ".join(repr(n) for n in types)
            )
        elif not allowed.match(types[name]):
            message = f"{field} {name!r} has type {types[name]}, expected {expected}"
        else:
            continue
        raise ValidationError(
            message, details=[{"path": f"$.{field}", "message": message, "columns": list(types)}]
        )


def _about_sql(exc: ValidationError) -> ValidationError:
    details = exc.details if isinstance(exc.details, dict) else {}
    return ValidationError(
        f"the metric SQL failed its dry run: {exc.message}", details={"path": "$.sql", **details}
    )


async def preview(
    found: ClickHouseReader, metric: MetricSql, reward_type: str, limit: int
) -> tuple[list[MetricRow], bool, float]:
    """The metric's newest normalized rows over all time: ``(rows, truncated, elapsed_ms)``."""
    sql = f"SELECT * FROM (\n{rows_sql(metric, reward_type)}\n) ORDER BY ts_us DESC"
    try:
        result = await ch.run(
            found.session,
            sql,
            ch.time_params(sql, BEGINNING, END_OF_TIME),
            database=found.database,
            limit=limit,
            max_bytes=found.limits.max_bytes,
        )
    except (engine.ServerError, Refused) as exc:
        raise _about_sql(sql_error(exc, found.limits)) from exc
    rows = [
        MetricRow(str(a), ch.EPOCH + timedelta(microseconds=int(t)), float(v))
        for a, t, v in result.rows
    ]
    return rows, result.truncated, result.elapsed_ms


async def fetch(
    found: ClickHouseReader, sql: str, start: datetime, end: datetime
) -> tuple[list[str], list[datetime], list[float]]:
    """A training pass's reward rows in ``[start, end]``; failures as the metric's (409)."""
    try:
        return await ch.fetch_rewards(found.session, sql, found.database, start, end)
    except (engine.ServerError, Refused) as exc:
        raise sql_error(exc, found.limits) from exc
