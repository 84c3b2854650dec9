"""Wire schemas of the metric resource (``/api/v2/metrics``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from levered.schemas.common import ResponseMeta
from levered.schemas.warehouse import MAX_SQL_CHARS

RewardType = Literal["bool", "numeric"]
MetricName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, description="Human-readable metric name.")
]
MetricSql = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_SQL_CHARS,
        description="One query returning reward events from the warehouse; `@start_date` is "
        "replaced by the start of the training window (a bound timestamptz).",
    ),
]
ColumnName = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=63, description="A column of the query's result, exactly."
    ),
]


class MetricCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: MetricName
    sql: MetricSql
    anonymous_id_col: ColumnName
    timestamp_col: ColumnName
    value_col: ColumnName | None = None
    reward_type: RewardType | None = None
    """Default: `numeric` with a value column, else `bool`."""


class Metric(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    sql: str
    anonymous_id_col: str
    timestamp_col: str
    value_col: str | None
    reward_type: RewardType
    created_at: datetime
    updated_at: datetime


class MetricResponse(Metric, frozen=True, kw_only=True):
    meta: ResponseMeta


class MetricList(msgspec.Struct, frozen=True):
    metrics: list[Metric]
    meta: ResponseMeta


class MetricRow(msgspec.Struct, frozen=True):
    """One reward event as training reads it."""

    anonymous_id: str
    timestamp: datetime
    value: float


class MetricPreview(msgspec.Struct, frozen=True):
    metric_id: UUID
    rows: list[MetricRow]
    """Newest first."""
    row_count: int
    truncated: bool
    elapsed_ms: float
    meta: ResponseMeta


class MetricDeleted(msgspec.Struct, frozen=True):
    id: UUID
    deleted: bool
    meta: ResponseMeta
