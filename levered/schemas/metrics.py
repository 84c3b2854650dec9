"""Wire schemas of the metric resource (``/api/v2/metrics``).

A metric's ``reward_type`` is ``bool`` (any row is a conversion), ``numeric`` (the value column
summed) or ``weighted``: two or more mutually exclusive *outcomes*, each a key, a weight and how
a reward row is matched to it (by the name column or by the value column); rows matching none
are the implicit ``failure`` outcome of weight 0 (docs/warehouse.md, "Weighted outcomes").
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

import msgspec

from levered.schemas.common import ResponseMeta
from levered.schemas.warehouse import MAX_SQL_CHARS

RewardType = Literal["bool", "numeric", "weighted"]
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


FAILURE: Final = "failure"
"""The implicit outcome of reward rows that match no declared outcome (weight 0)."""
MIN_OUTCOMES: Final = 2
MAX_OUTCOMES: Final = 20
MAX_WEIGHT: Final = 1e9

OutcomeKey = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=63,
        pattern="^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="The outcome's key in results: letters, digits, `_ . : -`; unique within "
        "the metric, never `failure` (the implicit outcome of unmatched rows).",
    ),
]
Weight = Annotated[
    float,
    msgspec.Meta(
        ge=-MAX_WEIGHT,
        le=MAX_WEIGHT,
        description="The reward of an exposure whose outcome this is; distinct per metric.",
    ),
]
MatchName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        pattern="^[^\\u0000]+$",
        description="A row matches when its name column equals this text exactly.",
    ),
]
MatchValue = Annotated[
    float,
    msgspec.Meta(
        ge=-1.7976931348623157e308,
        le=1.7976931348623157e308,
        description="A row matches when its value column (a boolean is 1 or 0) equals this.",
    ),
]


class NameMatch(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="by", tag="name"
):
    """Match reward rows by the metric's ``name_col``."""

    value: MatchName


class ValueMatch(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="by", tag="value"
):
    """Match reward rows by the metric's ``value_col``."""

    value: MatchValue


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One outcome of a weighted metric (the same Struct in and out)."""

    key: OutcomeKey
    weight: Weight
    match: NameMatch | ValueMatch


Outcomes = Annotated[
    list[Outcome],
    msgspec.Meta(
        min_length=MIN_OUTCOMES,
        max_length=MAX_OUTCOMES,
        description=f"{MIN_OUTCOMES}–{MAX_OUTCOMES} mutually exclusive outcomes: makes the "
        "metric `weighted`. An exposure's reward is the weight of the highest-weight outcome "
        "among its credited rows; rows matching none are `failure` (weight 0).",
    ),
]


class MetricCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: MetricName
    sql: MetricSql
    anonymous_id_col: ColumnName
    timestamp_col: ColumnName
    value_col: ColumnName | None = None
    reward_type: RewardType | None = None
    """Default: `weighted` with outcomes, else `numeric` with a value column, else `bool`."""
    outcomes: Outcomes | None = None
    name_col: ColumnName | None = None
    """The column that outcomes matched `by: name` compare (weighted metrics only)."""


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
    outcomes: list[Outcome] | None = None
    """Weighted metrics only: the outcomes, as declared."""
    name_col: str | None = None


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
