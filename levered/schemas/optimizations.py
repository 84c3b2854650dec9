"""Wire Structs of the optimizations resource (docs/optimizations.md).

The Structs check shapes, types and single-field ranges, so msgspec reports those with a JSON
path before any code runs. Rules that span fields (unique names, level dtypes, the size of the
variant space, exclusion rules) live in :mod:`levered.services.optimizations`, which reports
them with the same kind of path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from levered.schemas.common import ResponseMeta

Status = Literal["draft", "live", "paused", "shipped", "completed", "archived"]
ModelType = Literal["cmab", "mab"]
Dtype = Literal["str", "bool"]
RewardType = Literal["bool", "numeric", "weighted"]
ModelStatus = Literal["untrained", "training", "trained", "failed"]

Name = Annotated[str, Meta(min_length=1, max_length=200, description="1–200 characters.")]
FactorName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        description="1–100 characters; unique across design and context factors.",
    ),
]
Dimensions = Annotated[
    list[FactorName],
    Meta(
        max_length=10,
        description="Context keys kept for breakdowns only (`?dimension=`), not modeled: at "
        "most 10, unique, none of them a context factor.",
    ),
]
Level = str | bool
Levels = Annotated[
    list[Level],
    Meta(
        description="Strings of 1–200 characters for dtype "
        "`str`; exactly `[true, false]` in either "
        "order for dtype `bool`. The first level is "
        "the baseline's."
    ),
]
HoldoutPercentage = Annotated[
    float, Meta(ge=0, le=50, description="Share of users kept on the baseline, 0–50.")
]
ConversionWindowHours = Annotated[
    float,
    Meta(
        ge=1 / 60,
        le=720,
        description="Hours after an exposure during "
        "which a reward is credited to it: "
        "one minute (1/60) to 30 days (720); "
        "fractions allowed.",
    ),
]
ExclusionRule = Annotated[
    dict[str, Level],
    Meta(
        description="A partial factor→level map; every variant that "
        "matches all of its entries is never served."
    ),
]


class DesignFactor(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    name: FactorName
    dtype: Dtype = "str"
    levels: Levels


class ContextFactor(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A property of the user's request (country, device) the cmab model personalizes on.

    ``levels`` is optional: when given, it is the vocabulary the model knows up front.
    """

    name: FactorName
    dtype: Dtype = "str"
    levels: Levels | None = None


class Attribution(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    type: Literal["last_touch"] = "last_touch"
    conversion_window_hours: ConversionWindowHours = 24.0


Days = Annotated[float, Meta(gt=0, le=3650, description="Days, more than 0, at most 3,650.")]


class AllHistory(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag="all", tag_field="type"
):
    """Train on every matured observation (the default)."""


class LastDays(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag="days", tag_field="type"
):
    """Train on exposures of the last ``days`` days before the training's as-of time."""

    days: Days


class Decay(msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag="decay", tag_field="type"):
    """Weight every hour of exposures by 0.5^(age / half-life): for products whose best variant
    drifts. Counts become weighted sums; a new observation weighs 1."""

    half_life_days: Days


TrainingWindow = AllHistory | LastDays | Decay

GuardrailDirection = Literal["must_not_increase", "must_not_decrease"]
TolerancePercent = Annotated[
    float,
    Meta(
        gt=0,
        le=1000,
        description="The relative change of the guardrail metric (optimized vs holdout, in %) "
        "that is tolerated: more than 0, at most 1,000.",
    ),
]


class Guardrail(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A metric the optimization must not make worse (docs/analysis.md, "Guardrails").

    ``must_not_increase`` with ``tolerance_percent`` 5: the metric's per-user rate under
    optimized traffic may not exceed the holdout's by more than 5 %. ``auto_pause``: pause the
    optimization (serve the baseline) when the guardrail is violated.
    """

    metric_id: UUID
    direction: GuardrailDirection
    tolerance_percent: TolerancePercent
    auto_pause: bool = False


class StatusReason(msgspec.Struct, frozen=True, kw_only=True):
    """Why the server itself set the current status (an automatic pause)."""

    code: str
    """``guardrail_violated``."""
    message: str
    at: datetime
    metric_id: UUID | None = None
    details: dict[str, Any] | None = None


class OptimizationCreate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Name
    design_factors: list[DesignFactor]
    reward_metric_id: UUID
    context_factors: list[ContextFactor] = []
    model_type: ModelType = "cmab"
    holdout_percentage: HoldoutPercentage = 10.0
    attribution: Attribution = Attribution()
    excluded_combinations: list[ExclusionRule] = []
    sticky: bool = True
    draft: bool = False
    training_window: TrainingWindow = AllHistory()
    guardrails: list[Guardrail] = []
    """Metrics that must not get worse; each metric at most once, of this organization."""
    dimensions: Dimensions = []


class OptimizationUpdate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Every field optional; an absent field keeps its value.

    Design-related fields (factors, levels, context factors, exclusions, model type) can change
    only while the optimization is a draft.
    """

    name: Name | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    design_factors: list[DesignFactor] | UnsetType = UNSET
    context_factors: list[ContextFactor] | UnsetType = UNSET
    excluded_combinations: list[ExclusionRule] | UnsetType = UNSET
    model_type: ModelType | UnsetType = UNSET
    holdout_percentage: HoldoutPercentage | UnsetType = UNSET
    attribution: Attribution | UnsetType = UNSET
    reward_metric_id: UUID | UnsetType = UNSET
    sticky: bool | UnsetType = UNSET
    training_window: TrainingWindow | UnsetType = UNSET
    """Editable in every status but archived; the next training uses it."""
    guardrails: list[Guardrail] | UnsetType = UNSET
    """Replaces the whole list; editable in every status but archived."""
    dimensions: Dimensions | UnsetType = UNSET
    """Replaces the whole list; editable in every status but archived (the next training
    pass rebuilds the stored cells)."""


class LinkedMetric(msgspec.Struct, frozen=True):
    id: UUID
    name: str
    reward_type: RewardType


class Baseline(msgspec.Struct, frozen=True):
    number: int
    variant: dict[str, Level]
    variant_key: str


class LinkedModel(msgspec.Struct, frozen=True):
    id: UUID
    status: ModelStatus
    current_version: int | None
    trained_at: datetime | None = None


class Optimization(msgspec.Struct, frozen=True):
    """One optimization as the API shows it (also each item of a list).

    ``variants_count`` counts the variants that can be served (after exclusions);
    ``variants_total`` counts every combination of levels.
    """

    id: UUID
    name: str
    status: Status
    model_type: ModelType
    design_factors: list[DesignFactor]
    context_factors: list[ContextFactor]
    reward_metric_id: UUID | None
    reward_metric: LinkedMetric | None
    attribution: Attribution
    holdout_percentage: float
    excluded_combinations: list[dict[str, Level]]
    sticky: bool
    variants_count: int
    variants_total: int
    baseline: Baseline
    model: LinkedModel | None
    summary: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    training_window: TrainingWindow = AllHistory()
    guardrails: list[Guardrail] = []
    dimensions: list[str] = []
    status_reason: StatusReason | None = None
    """Set when the server changed the status itself (a guardrail's auto-pause); null after
    any status change through the API."""


class OptimizationResponse(Optimization, frozen=True, kw_only=True):
    meta: ResponseMeta


class OptimizationList(msgspec.Struct, frozen=True):
    optimizations: list[Optimization]
    meta: ResponseMeta


class Variant(msgspec.Struct, frozen=True):
    number: int
    variant_key: str
    variant: dict[str, Level]
    excluded: bool


class VariantPage(msgspec.Struct, frozen=True):
    variants: list[Variant]
    total: int
    limit: int
    offset: int
    meta: ResponseMeta


class Deleted(msgspec.Struct, frozen=True):
    id: UUID
    deleted: bool
    meta: ResponseMeta


def with_meta(optimization: Optimization, meta: ResponseMeta) -> OptimizationResponse:
    """The single-resource body: the optimization's fields plus ``meta`` at top level."""
    return OptimizationResponse(**msgspec.structs.asdict(optimization), meta=meta)
