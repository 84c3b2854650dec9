"""Wire Structs of the analysis surfaces of an optimization (docs/analysis.md): guardrails,
progress, lift history and the report document. Every figure comes from stored cells."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

import msgspec

from levered.schemas.common import ResponseMeta
from levered.schemas.optimizations import GuardrailDirection, Status, StatusReason
from levered.schemas.results import Results

GuardrailStatus = Literal["ok", "violated", "pending"]


class GuardrailResult(msgspec.Struct, frozen=True, kw_only=True):
    """One guardrail judged optimized traffic vs the holdout, per user."""

    metric_id: UUID
    metric_name: str | None
    """Null when the metric no longer exists."""
    reward_type: str | None
    direction: GuardrailDirection
    tolerance_percent: float
    auto_pause: bool
    status: GuardrailStatus
    """``violated``: the 95 % interval of the change lies wholly beyond the tolerance;
    ``ok``: wholly within it; ``pending``: neither yet (or too few users, or no data)."""
    reason: str
    """Why this status, in words."""
    optimized_rate: float | None
    holdout_rate: float | None
    optimized_users: int
    holdout_users: int
    change_percent: float | None
    """100 · (optimized rate / holdout rate − 1)."""
    ci: list[float] | None
    """95 % interval of change_percent (log-ratio delta method, ≥ 100 users per arm)."""
    p_value: float | None
    """Two-sided test of no change (same estimator as the interval)."""
    data_through: datetime | None
    """Exposures up to this time are counted (their conversion window has closed)."""


class GuardrailReport(msgspec.Struct, frozen=True, kw_only=True):
    optimization_id: UUID
    status: Status
    """The optimization's status after this evaluation."""
    status_reason: StatusReason | None
    paused: bool
    """True when this evaluation paused the optimization (a violated ``auto_pause``)."""
    guardrails: list[GuardrailResult]
    as_of: datetime
    meta: ResponseMeta | None = None


class ArmProgress(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    variant_key: str
    exposures: int
    """Matured observations of the variant (holdout ones included for variant 1)."""
    prob_best: float | None


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """How far the optimization is from a decision (docs/analysis.md, "Progress")."""

    optimization_id: UUID
    status: Status
    started_at: datetime | None
    """The first exposure's day (UTC midnight); null without exposures."""
    days_running: float
    """Days from the first exposure's day to ``as_of``."""
    optimized_users: int
    holdout_users: int
    arms: list[ArmProgress]
    """The allowed variants by prob_best (at most ``limit``)."""
    leader: int | None
    """The variant with the highest prob_best; null until trained."""
    leader_prob_best: float | None
    threshold: float
    """The prob_best at which the leader counts as certain (``?threshold=``, default 0.95)."""
    certainty: float | None
    """leader_prob_best / threshold, at most 1: how close the leader is to certain."""
    decided: bool
    daily_observations: float | None
    """Matured exposures per day over the last 7 days with data: the rate the estimate uses."""
    observations_to_decision: int | None
    """More matured observations the leader needs, by the z-scaling method (docs/analysis.md)."""
    expected_days_to_decision: float | None
    """observations_to_decision / daily_observations; 0 when decided; null when it cannot be
    estimated (untrained, a tie, no traffic); ``method`` says which."""
    method: str
    """How the estimate was made, or why there is none."""
    as_of: datetime
    meta: ResponseMeta | None = None


class LiftArm(msgspec.Struct, frozen=True, kw_only=True):
    optimized_rate: float | None
    holdout_rate: float | None
    optimized_users: int
    holdout_users: int
    lift_percent: float | None
    ci: list[float] | None
    p_value: float | None


class ModeledLift(msgspec.Struct, frozen=True, kw_only=True):
    """The model's improvement over the baseline as one model version estimated it."""

    percent: float
    ci: list[float]
    """95 % posterior interval."""
    version: int
    trained_at: datetime


class LiftPoint(msgspec.Struct, frozen=True, kw_only=True):
    date: date
    daily: LiftArm
    """Users exposed that day, their outcomes of that day's exposures."""
    cumulative: LiftArm
    """Users exposed up to and including that day, their outcomes through it: the measured
    lift as it stood then (the last point equals the results' ``measured_lift``)."""
    modeled: ModeledLift | None = None
    """The modeled improvement of the current allocation over the baseline, from the last
    model version trained by the end of that day (UTC); null before the first one, or when
    that version had no data to claim a lift from."""


class LiftHistory(msgspec.Struct, frozen=True, kw_only=True):
    optimization_id: UUID
    reward_type: str | None
    points: list[LiftPoint]
    data_through: datetime | None
    as_of: datetime
    note: str | None = None
    meta: ResponseMeta | None = None


class ReportData(msgspec.Struct, frozen=True, kw_only=True):
    """Everything about one optimization for notebooks and reports, in one document."""

    optimization_id: UUID
    name: str
    status: Status
    results: Results
    guardrails: GuardrailReport
    progress: Progress
    lift_history: LiftHistory
    generated_at: datetime
    meta: ResponseMeta
