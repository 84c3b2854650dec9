"""Wire Structs of ``GET /api/v2/optimizations/{id}/results`` (docs/training.md). Formulas and
decisions: docs/training.md.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import msgspec

from levered.schemas.common import ResponseMeta
from levered.schemas.models import Interval, Level


class Spread(msgspec.Struct, frozen=True):
    """Posterior mean and quartiles of a share (0–1)."""

    mean: float
    q1: float
    q3: float


class OutcomeShare(msgspec.Struct, frozen=True):
    """One outcome of a weighted metric in a variant's matured exposures."""

    key: str
    """A declared outcome's key, or `failure` (no credited row matched an outcome)."""
    weight: float
    exposures: int
    """Exposures whose outcome this is (their highest-weight credited outcome)."""
    share: float | None
    """exposures / the variant's exposures; null without exposures."""


class VariantResult(msgspec.Struct, frozen=True):
    number: int
    variant: dict[str, Level]
    variant_key: str
    exposures: int
    """Matured exposures (observations) of the variant, holdout ones included for variant 1."""
    conversions: int | None
    """Bool metrics: observations credited a reward. Null for numeric metrics."""
    reward_sum: float | None
    """Numeric metrics: Σ reward; weighted metrics: Σ outcome weight. Null for bool metrics."""
    rate: float | None
    """conversions (or reward_sum) / exposures; null without exposures."""
    expected_reward: Interval | None
    prob_best: float | None
    weight: float | None
    """prob_best × (1 − holdout); null until trained."""
    outcomes: list[OutcomeShare] | None = None
    """Weighted metrics: the outcome mix of the exposures, declared outcomes then `failure`."""


class MeasuredLift(msgspec.Struct, frozen=True):
    """Optimized traffic vs the randomized holdout, per user, pooled."""

    optimized_rate: float | None
    holdout_rate: float | None
    optimized_users: int
    holdout_users: int
    lift_percent: float | None
    ci: list[float] | None
    """95 % interval of lift_percent (delta method); only with ≥ 100 users per arm."""
    p_value: float | None
    """Two-sided z-test of the difference of means; only with ≥ 100 users per arm."""


class Modeled(msgspec.Struct, frozen=True):
    estimated_improvement_percent: Interval | None
    best_vs_baseline_percent: Interval | None
    estimated_progress: float | None


class LevelEffect(msgspec.Struct, frozen=True):
    level: Level
    effect: Interval
    """E[reward | this level] − E[reward | first level], averaged over the other factors."""


class FactorImportance(msgspec.Struct, frozen=True):
    name: str
    mean: float
    q1: float
    q3: float
    levels: list[LevelEffect]


class PairImportance(msgspec.Struct, frozen=True):
    factors: list[str]
    mean: float
    q1: float
    q3: float


class InteractionImportance(msgspec.Struct, frozen=True):
    mean: float
    q1: float
    q3: float
    pairs: list[PairImportance]


class ContextImportance(msgspec.Struct, frozen=True):
    name: str
    mean: float
    """Share of variation from the context value and value × design together."""
    q1: float
    q3: float
    context: Spread
    interaction: Spread


class DayVariant(msgspec.Struct, frozen=True):
    number: int
    exposures: int
    reward: float


class DayArm(msgspec.Struct, frozen=True):
    exposures: int
    matured: int
    reward: float


class DayPoint(msgspec.Struct, frozen=True):
    date: date
    exposures: int
    """All exposures of the day (matured and pending)."""
    matured: int
    reward: float
    """Σ reward of the day's matured exposures."""
    rate: float | None
    """reward / matured."""
    variants: list[DayVariant]
    """Optimized (non-holdout) traffic per variant."""
    holdout: DayArm


class DimensionArm(msgspec.Struct, frozen=True, kw_only=True):
    """One variant (or arm) within one value of the dimension; the unit is the exposure."""

    number: int | None
    """The variant; null for the pooled optimized / holdout arms."""
    exposures: int
    reward_sum: float
    rate: float | None
    """reward_sum / exposures."""
    ci: list[float] | None
    """95 % interval of ``rate`` (normal approximation, ≥ 2 exposures)."""


class DimensionValue(msgspec.Struct, frozen=True, kw_only=True):
    value: Any
    """The context value (as sent); null: exposures that did not send the factor."""
    exposures: int
    variants: list[DimensionArm]
    """Optimized (non-holdout) traffic per variant."""
    optimized: DimensionArm
    holdout: DimensionArm
    lift_percent: float | None
    """Optimized vs holdout within this value: 100 · (rate_o / rate_h − 1)."""
    lift_ci: list[float] | None
    """Its 95 % log-ratio delta-method interval, per exposure, with ≥ 100 exposures per arm."""


class DimensionBreakdown(msgspec.Struct, frozen=True, kw_only=True):
    """Results broken down by one context factor (``?dimension=``), from the stored cells."""

    name: str
    values: list[DimensionValue]
    """Most exposures first; at most 100 values."""
    values_total: int


class ResultsModel(msgspec.Struct, frozen=True):
    id: UUID
    status: str
    version: int | None
    trained_at: datetime | None
    pending: int
    """Exposures still inside their conversion window now."""


class Results(msgspec.Struct, frozen=True):
    optimization_id: UUID
    reward_type: str | None
    as_of: datetime
    variants: list[VariantResult]
    variants_total: int
    measured_lift: MeasuredLift
    modeled: Modeled | None
    factor_importance: list[FactorImportance]
    interaction_importance: InteractionImportance | None
    context_importance: list[ContextImportance]
    time_series: list[DayPoint]
    model: ResultsModel | None
    note: str | None
    meta: ResponseMeta
    context: dict[str, Any] | None = None
    """The context the posterior fields describe (``?context=``); None: the population.
    Counts, measured lift and the time series always cover all traffic."""
    data_through: datetime | None = None
    """Counts include exposures up to this time (their conversion window closed by
    ``as_of``); later ones are pending."""
    training_window: dict[str, Any] | None = None
    """What the model trains on: ``{"type": "all"}``, ``{"type": "days", "days": N}`` or
    ``{"type": "decay", "half_life_days": H}``."""
    dimension: DimensionBreakdown | None = None
    """``?dimension=<context factor>``: counts, rates and intervals per value of the factor."""
