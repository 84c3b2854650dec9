"""Guardrails: judge each guardrail metric optimized vs holdout; pause on a violated one if asked.

Each guardrail metric is attributed to the optimization's exposures into its own stored cells
(:mod:`levered.services.guardrail_cells`); its per-user outcomes per arm give the same
estimator as the measured lift (:func:`levered.services.results.measured_lift`): change
c = 100 · (m_o / m_h − 1), log-ratio delta method. The interval a guardrail is judged on is an
*always-valid* 95 % one (:func:`confidence_sequence`): guardrails are evaluated again and again
as data arrives, and a fixed 95 % interval looked at after every pass crosses a true tolerance
far more often than 2.5 % of the time. With tolerance t (percent), :func:`judge` says

- ``must_not_increase``: ``violated`` when the interval's lower end exceeds +t (the metric rose
  by more than t %, with 95 % confidence), ``ok`` when its upper end is at most +t;
- ``must_not_decrease``: ``violated`` when the upper end is below −t, ``ok`` when the lower end
  is at least −t;
- ``pending`` otherwise: the interval still straddles the tolerance, or there is none yet
  (fewer than 100 users in an arm, a zero rate).

So for a true change at most the tolerance, a violation is flagged with probability at most
2.5 % (one side of a 95 % confidence sequence) *however often it is evaluated* — asymptotically,
as for the delta method itself — less the further inside the tolerance it is. An automatic
pause is still opt-in and always explained (``status_reason``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import msgspec

from levered.db import attribution as attribution_db
from levered.db import guardrail_cells as db
from levered.db import optimizations as optimizations_db
from levered.db.attribution import Arm
from levered.errors import Conflict, NotFound
from levered.schemas.analysis import GuardrailReport, GuardrailResult, GuardrailStatus
from levered.schemas.common import ResponseMeta
from levered.schemas.optimizations import Guardrail, StatusReason
from levered.services import guardrail_cells
from levered.services import optimizations as optimizations_service
from levered.services.results import MIN_ARM_USERS, Z95, measured_lift
from levered.services.warehouse import Warehouse

log = logging.getLogger(__name__)

ALPHA: Final = 0.05
"""Two-sided error of the confidence sequence: 2.5 % per side over all evaluations."""
PLANNED_USERS: Final = 10_000
"""Users (both arms) at which the confidence sequence is tightest (its ρ); valid at every size,
≈ 1.55× the fixed interval's width there, wider far before or after it."""
_LOG_ALPHA: Final = -2.0 * math.log(ALPHA)
RHO2: Final = (_LOG_ALPHA + math.log(_LOG_ALPHA + 1.0)) / PLANNED_USERS

DEGRADED: Final = frozenset({"metric_failed", "metric_timeout"})
"""A guardrail whose metric fails now is ``pending`` with the reason, not an error."""


@dataclass(frozen=True)
class Judgement:
    status: GuardrailStatus
    reason: str
    change_percent: float | None
    ci: list[float] | None
    p_value: float | None
    optimized_rate: float | None
    holdout_rate: float | None
    optimized_users: int
    holdout_users: int


def confidence_sequence(ci: list[float], users: int) -> list[float]:
    """The always-valid 95 % interval of the change with ``ci`` as its fixed 95 % interval
    (delta method on the log ratio, :func:`levered.services.results.measured_lift`) at
    ``users`` users: the asymptotic confidence sequence of Waudby-Smith et al. (2024,
    "Time-uniform central limit theory"), θ̂ ± σ̂ · √(2(tρ² + 1)/(t²ρ²) · log(√(tρ² + 1)/α)) on
    the log ratio, with σ̂ = se · √t and ρ chosen for :data:`PLANNED_USERS`."""
    lo, hi = math.log1p(ci[0] / 100.0), math.log1p(ci[1] / 100.0)
    centre, se = (lo + hi) / 2.0, (hi - lo) / (2.0 * Z95)
    r = users * RHO2
    half = se * math.sqrt(2.0 * (r + 1.0) / r * math.log(math.sqrt(r + 1.0) / ALPHA))
    return [100.0 * math.expm1(centre - half), 100.0 * math.expm1(centre + half)]


def always_valid_p(ci: list[float], users: int) -> float:
    """The smallest α at which the confidence sequence (same ρ) excludes no change: below 0.05
    exactly when :func:`confidence_sequence` excludes 0, so the two never disagree."""
    lo, hi = math.log1p(ci[0] / 100.0), math.log1p(ci[1] / 100.0)
    se = (hi - lo) / (2.0 * Z95)
    if se == 0.0:
        return float(lo == 0.0)
    z = (lo + hi) / 2.0 / se
    r = users * RHO2
    return min(1.0, math.sqrt(r + 1.0) * math.exp(-z * z * r / (2.0 * (r + 1.0))))


def judge(direction: str, tolerance_percent: float, optimized: Arm, holdout: Arm) -> Judgement:
    """The status of one guardrail from its per-user arm totals (module doc for the rule)."""
    lift = measured_lift(optimized, holdout)
    users = lift.optimized_users + lift.holdout_users
    ci = None if lift.ci is None else confidence_sequence(lift.ci, users)
    t = tolerance_percent
    if ci is None:
        status: GuardrailStatus = "pending"
        if min(lift.optimized_users, lift.holdout_users) < MIN_ARM_USERS:
            reason = (
                f"not enough data: {lift.optimized_users} optimized and {lift.holdout_users} "
                f"holdout users; an interval needs {MIN_ARM_USERS} in each arm"
            )
        else:
            reason = "no interval: the metric is zero in an arm"
    elif direction == "must_not_increase":
        if ci[0] > t:
            status, reason = (
                "violated",
                f"rose by more than {t:g} % (always-valid 95 % interval above +{t:g})",
            )
        elif ci[1] <= t:
            status, reason = "ok", f"did not rise by more than {t:g} % (interval at most +{t:g})"
        else:
            status, reason = "pending", f"the always-valid 95 % interval still contains +{t:g} %"
    elif ci[1] < -t:
        status, reason = (
            "violated",
            f"fell by more than {t:g} % (always-valid 95 % interval below -{t:g})",
        )
    elif ci[0] >= -t:
        status, reason = "ok", f"did not fall by more than {t:g} % (interval at least -{t:g})"
    else:
        status, reason = "pending", f"the always-valid 95 % interval still contains -{t:g} %"
    return Judgement(
        status=status,
        reason=reason,
        change_percent=lift.lift_percent,
        ci=ci,
        p_value=None if lift.ci is None else always_valid_p(lift.ci, users),
        optimized_rate=lift.optimized_rate,
        holdout_rate=lift.holdout_rate,
        optimized_users=lift.optimized_users,
        holdout_users=lift.holdout_users,
    )


async def evaluate(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    meta: ResponseMeta | None = None,
    wait: bool = False,
) -> GuardrailReport:
    """Extend each guardrail's cells, judge it, and pause the optimization when a violated
    guardrail asks to (only a live one). 404 for another organization's optimization."""
    optimization = await optimizations_service.get_optimization(
        wh.pool, organization_id, optimization_id
    )
    async with wh.pool.acquire() as conn:
        found = await attribution_db.find_target(conn, organization_id, optimization_id)
        named = await db.metrics(
            conn, organization_id, [g.metric_id for g in optimization.guardrails]
        )
    if found is None:
        raise NotFound(f"no optimization {optimization_id} in this organization")
    spec = found[0]
    results = [
        await _one(wh, organization_id, spec, g, named.get(g.metric_id), wait)
        for g in optimization.guardrails
    ]
    status, reason, paused = optimization.status, optimization.status_reason, False
    violated = [r for r in results if r.status == "violated" and r.auto_pause]
    if violated and status == "live":
        reason = _pause_reason(violated[0])
        async with wh.pool.acquire() as conn:
            paused = await optimizations_db.pause_for(
                conn, organization_id, optimization_id, _builtins(reason)
            )
        if paused:
            status = "paused"
            log.warning("optimization %s paused: %s", optimization_id, reason.message)
    return GuardrailReport(
        optimization_id=optimization_id,
        status=status,
        status_reason=reason,
        paused=paused,
        guardrails=results,
        as_of=datetime.now(UTC),
        meta=meta,
    )


async def _one(
    wh: Warehouse,
    organization_id: UUID,
    spec: attribution_db.OptimizationSpec,
    guardrail: Guardrail,
    metric: db.NamedMetric | None,
    wait: bool,
) -> GuardrailResult:
    empty = Arm(0, 0.0, 0.0)
    through = None
    if metric is None:
        judgement = _pending(
            judge(guardrail.direction, 1.0, empty, empty), "the metric no longer exists"
        )
    else:
        note: str | None = None
        try:
            done = await guardrail_cells.extend(
                wh, organization_id, spec, guardrail.metric_id, metric.spec, wait=wait
            )
        except Conflict as exc:
            if exc.code not in DEGRADED:
                raise
            done, note = None, f"{exc.code}: {exc.message}"
        async with wh.pool.acquire() as conn:
            state = (
                done.state
                if done is not None
                else await db.load_state(conn, spec.id, guardrail.metric_id)
            )
            arms = await db.arms(
                conn, spec.id, guardrail.metric_id, bool_metric=metric.spec.reward_type == "bool"
            )
        through = None if state is None else state.frontier
        judgement = judge(guardrail.direction, guardrail.tolerance_percent, arms[False], arms[True])
        if note is not None:
            judgement = _pending(judgement, f"the metric cannot be computed now ({note})")
        elif state is None:
            judgement = _pending(judgement, "the first attribution of this metric is running")
    return GuardrailResult(
        metric_id=guardrail.metric_id,
        metric_name=None if metric is None else metric.name,
        reward_type=None if metric is None else metric.spec.reward_type,
        direction=guardrail.direction,
        tolerance_percent=guardrail.tolerance_percent,
        auto_pause=guardrail.auto_pause,
        status=judgement.status,
        reason=judgement.reason,
        optimized_rate=judgement.optimized_rate,
        holdout_rate=judgement.holdout_rate,
        optimized_users=judgement.optimized_users,
        holdout_users=judgement.holdout_users,
        change_percent=judgement.change_percent,
        ci=judgement.ci,
        p_value=judgement.p_value,
        data_through=through,
    )


def _pending(judgement: Judgement, reason: str) -> Judgement:
    return Judgement(
        "pending",
        reason,
        judgement.change_percent,
        judgement.ci,
        judgement.p_value,
        judgement.optimized_rate,
        judgement.holdout_rate,
        judgement.optimized_users,
        judgement.holdout_users,
    )


def _pause_reason(result: GuardrailResult) -> StatusReason:
    ci = result.ci or [float("nan"), float("nan")]
    name = result.metric_name or str(result.metric_id)
    return StatusReason(
        code="guardrail_violated",
        message=f"paused automatically: guardrail {name!r} ({result.direction}, tolerance "
        f"{result.tolerance_percent:g} %) is violated: change {result.change_percent:+.2f} % "
        f"(95 % CI [{ci[0]:+.2f} %, {ci[1]:+.2f} %]) over {result.optimized_users} optimized "
        f"and {result.holdout_users} holdout users. Set the status to live again to resume",
        at=datetime.now(UTC),
        metric_id=result.metric_id,
        details={
            "direction": result.direction,
            "tolerance_percent": result.tolerance_percent,
            "change_percent": result.change_percent,
            "ci": result.ci,
            "optimized_users": result.optimized_users,
            "holdout_users": result.holdout_users,
        },
    )


def _builtins(reason: StatusReason) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(reason)
    return out


async def run_scheduled(wh: Warehouse) -> int:
    """Evaluate every live optimization with an ``auto_pause`` guardrail (the scheduler's
    hook); how many were paused. One optimization's failure is logged, never raised."""
    paused = 0
    async with wh.pool.acquire() as conn:
        targets = await db.live_with_auto_pause(conn)
    for organization_id, optimization_id in targets:
        try:
            report = await evaluate(wh, organization_id, optimization_id)
            paused += int(report.paused)
        except Exception:
            log.exception("guardrail evaluation of %s failed", optimization_id)
    return paused
