"""Results of an optimization (docs/training.md): counts, measured lift, modeled lift, importance,
daily series — from a fresh attribution (as of the request) and the current model version.

Measured lift compares per-user pooled outcomes of optimized traffic (mean m_o over n_o users,
sample variance s²_o) and the holdout (m_h, n_h, s²_h):

- ``lift_percent`` = 100 · (m_o / m_h − 1);
- one estimator for both the interval and the test: the delta method on the log ratio
  log R = log m_o − log m_h, Var(log R) ≈ Var(m_o) / m_o² + Var(m_h) / m_h² with
  Var(m) = s² / n. ``ci`` = 100 · (exp(log R ± 1.96 · se) − 1) and ``p_value`` =
  erfc(|log R / se| / √2), the Wald test of log R = 0. The interval excludes 0 exactly when
  p < 0.05 (a separate difference test next to a ratio interval could print an interval across
  0 beside p < 0.01), and it is asymmetric like the ratio itself;
- CI and p only when both arms have at least :data:`MIN_ARM_USERS` users and both means are
  positive (log R is undefined otherwise).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Final
from uuid import UUID

import anyio
import msgspec
import numpy as np
import numpy.typing as npt

from levered.bandit import results as bandit_results
from levered.db.attribution import Arm, find_target
from levered.errors import Conflict
from levered.schemas.common import ResponseMeta
from levered.schemas.metrics import FAILURE
from levered.schemas.results import (
    ContextImportance,
    DayArm,
    DayPoint,
    DayVariant,
    FactorImportance,
    InteractionImportance,
    LevelEffect,
    MeasuredLift,
    Modeled,
    OutcomeShare,
    PairImportance,
    Results,
    ResultsModel,
    Spread,
    VariantResult,
)
from levered.services import dimensions, models
from levered.services.observations import Attribution, attribute, stored
from levered.services.warehouse import Warehouse

MIN_ARM_USERS: Final = 100
Z95: Final = 1.959963984540054
DEGRADED: Final = frozenset({"no_reward_metric", "metric_failed", "metric_timeout"})
"""Attribution errors that leave results without counts (with a note) rather than failing."""


def _mean_var(arm: Arm) -> tuple[float, float]:
    """Mean and variance of the mean, Var(m) = s² / n with the sample variance s²."""
    n = arm.users
    mean = arm.outcome_sum / n
    s2 = max(arm.outcome_sumsq - arm.outcome_sum * arm.outcome_sum / n, 0.0) / (n - 1)
    return mean, s2 / n


def _plain(arm: Arm) -> Arm:
    """The SQL sums arrive as ``numeric`` (Decimal); the formulas want int/float."""
    return Arm(int(arm.users), float(arm.outcome_sum), float(arm.outcome_sumsq))


def measured_lift(optimized: Arm, holdout: Arm, min_users: int = MIN_ARM_USERS) -> MeasuredLift:
    """Optimized vs holdout per user (module doc for the formulas)."""
    optimized, holdout = _plain(optimized), _plain(holdout)
    o_rate = optimized.outcome_sum / optimized.users if optimized.users else None
    h_rate = holdout.outcome_sum / holdout.users if holdout.users else None
    lift = None
    if o_rate is not None and h_rate is not None and h_rate != 0.0:
        lift = 100.0 * (o_rate / h_rate - 1.0)
    ci: list[float] | None = None
    p_value = None
    if optimized.users >= min_users and holdout.users >= min_users:
        m_o, v_o = _mean_var(optimized)
        m_h, v_h = _mean_var(holdout)
        if m_o > 0.0 and m_h > 0.0:
            log_ratio = math.log(m_o / m_h)
            se = math.sqrt(v_o / m_o**2 + v_h / m_h**2)
            if se > 0:
                p_value = math.erfc(abs(log_ratio / se) / math.sqrt(2.0))
            else:
                p_value = float(log_ratio == 0.0)
            ci = [
                100.0 * (math.exp(log_ratio - Z95 * se) - 1.0),
                100.0 * (math.exp(log_ratio + Z95 * se) - 1.0),
            ]
    return MeasuredLift(
        optimized_rate=o_rate,
        holdout_rate=h_rate,
        optimized_users=optimized.users,
        holdout_users=holdout.users,
        lift_percent=lift,
        ci=ci,
        p_value=p_value,
    )


def _as_of(att: Attribution | None) -> datetime:
    """When the counts are from: the stored cells' last pass (now when there are none)."""
    return datetime.now(UTC) if att is None else att.as_of


async def results(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    limit: int,
    meta: ResponseMeta,
    as_of: datetime | None = None,
    context: Mapping[str, Any] | None = None,
    dimension: str | None = None,
) -> Results:
    """Every field of the results (docs/training.md); 404 for another organization's one.
    ``dimension``: a context factor or dimension to break the counts down by
    (docs/analysis.md)."""
    async with wh.pool.acquire() as conn:
        s = await models.subject(conn, organization_id, optimization_id)
        factors: tuple[str, ...] = ()
        if dimension is not None:
            found = await find_target(conn, organization_id, optimization_id)
            factors = () if found is None else found[0].context_factors
            dimensions.check(dimension, factors, () if found is None else found[0].dimensions)
    note = None
    try:
        att: Attribution | None = (
            await stored(wh, organization_id, optimization_id, wait=False, windowed=False)
            if as_of is None
            else await attribute(wh, organization_id, optimization_id, as_of=as_of)
        )
    except Conflict as exc:
        # The model's view stays useful while the metric is missing or broken: answer with
        # what the posterior says, zero counts and the reason, rather than an error.
        if exc.code not in DEGRADED:
            raise
        att = None
        note = (
            "the optimization has no reward metric: nothing can be measured yet"
            if exc.code == "no_reward_metric"
            else f"counts are unavailable ({exc.code}): {exc.message}"
        )
    summary = await models.summarize(s, context)
    if note is None and s.version is None:
        note = models.UNTRAINED_NOTE
    elif note is None and summary is None:
        note = "the current model version was trained on another design; retrain the model"
    breakdown = (
        None
        if dimension is None or as_of is not None
        else await dimensions.dimension(wh, optimization_id, dimension, factors)
    )
    return await anyio.to_thread.run_sync(
        lambda: msgspec.structs.replace(
            _assemble(s, att, summary, limit, as_of or _as_of(att), note, meta),
            context=None if context is None else dict(context),
            dimension=breakdown,
        )
    )


def _per_variant(
    att: Attribution | None, size: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if att is None or att.cells.size == 0:
        return np.zeros(size), np.zeros(size)
    c = att.cells
    ok = c.variant_number <= size  # hand-sent exposures may carry impossible numbers
    idx = c.variant_number[ok] - 1
    return (
        np.bincount(idx, weights=c.count[ok], minlength=size).astype(np.float64),
        np.bincount(idx, weights=c.reward_sum[ok], minlength=size).astype(np.float64),
    )


def _mix(att: Attribution, number: int, exposures: int) -> list[OutcomeShare]:
    """A weighted metric's outcome mix of one variant: each declared outcome's exposures (from
    the cells' per-outcome counts), then failure, the rest."""
    counts = att.outcome_counts.get(number, [])
    counts = counts + [0] * (len(att.outcomes) - len(counts))
    failure = exposures - sum(counts)
    return [
        OutcomeShare(key, weight, n, n / exposures if exposures else None)
        for key, weight, n in [
            *((o.key, o.weight, c) for o, c in zip(att.outcomes, counts, strict=True)),
            (FAILURE, 0.0, failure),
        ]
    ]


def _assemble(
    s: models.Subject,
    att: Attribution | None,
    summary: bandit_results.Results | None,
    limit: int,
    as_of: datetime,
    note: str | None,
    meta: ResponseMeta,
) -> Results:
    reward_type = None if att is None else att.reward_type
    counts, sums = _per_variant(att, s.space.size)
    variants: list[VariantResult] = []
    for i in models.ranked(s.allowed, None if summary is None else summary.weight, limit):
        number = i + 1
        n = int(counts[i])
        total = float(sums[i])
        variants.append(
            VariantResult(
                number=number,
                variant=s.space.variant(number),
                variant_key=s.space.key(number),
                exposures=n,
                conversions=round(total) if reward_type == "bool" else None,
                reward_sum=total if reward_type != "bool" else None,
                rate=total / n if n else None,
                expected_reward=None
                if summary is None
                else models.interval(summary.expected_reward[i]),
                prob_best=None if summary is None else float(summary.prob_best[i]),
                weight=None if summary is None else float(summary.weight[i]),
                outcomes=None if att is None or not att.outcomes else _mix(att, number, n),
            )
        )
    empty = Arm(0, 0.0, 0.0)
    lift = measured_lift(
        empty if att is None else att.optimized_users, empty if att is None else att.holdout_users
    )
    v = s.version
    model = None
    if s.model_id is not None:
        model = ResultsModel(
            id=s.model_id,
            status=s.model_status or "untrained",
            version=None if v is None else v.version,
            trained_at=None if v is None else v.trained_at,
            pending=0 if att is None else int(att.pending),
        )
    return Results(
        optimization_id=s.optimization_id,
        reward_type=reward_type,
        as_of=as_of,
        variants=variants,
        variants_total=int(s.allowed.sum()),
        measured_lift=lift,
        modeled=None if summary is None else _modeled(summary),
        factor_importance=[] if summary is None else _factors(s, summary),
        interaction_importance=None if summary is None else _interactions(s, summary),
        context_importance=[] if summary is None else _contexts(summary),
        time_series=[] if att is None else _days(att),
        model=model,
        note=note,
        meta=meta,
        data_through=None if att is None else att.data_through,
        training_window=None if att is None else att.optimization.training_window,
    )


def _modeled(summary: bandit_results.Results) -> Modeled:
    return Modeled(
        estimated_improvement_percent=models.optional_interval(
            summary.estimated_improvement_percent
        ),
        best_vs_baseline_percent=models.optional_interval(summary.best_vs_baseline_percent),
        estimated_progress=summary.estimated_progress,
    )


def _spread(x: bandit_results.Spread) -> Spread:
    return Spread(x.mean, x.q1, x.q3)


def _factors(s: models.Subject, summary: bandit_results.Results) -> list[FactorImportance]:
    out = []
    for f in summary.factor_importance:
        factor = s.space.factors[f.factor]
        levels = [
            LevelEffect(level, models.interval(effect))
            for level, effect in zip(factor.levels, f.level_effects, strict=True)
        ]
        imp = f.importance
        out.append(FactorImportance(factor.name, imp.mean, imp.q1, imp.q3, levels))
    return out


def _interactions(s: models.Subject, summary: bandit_results.Results) -> InteractionImportance:
    names = [f.name for f in s.space.factors]
    pairs = [
        PairImportance([names[f], names[g]], x.mean, x.q1, x.q3)
        for (f, g), x in sorted(summary.pair_importance.items(), key=lambda kv: -kv[1].mean)
    ]
    x = summary.interaction_importance
    return InteractionImportance(x.mean, x.q1, x.q3, pairs)


def _contexts(summary: bandit_results.Results) -> list[ContextImportance]:
    out = []
    for name, parts in summary.context_importance.items():
        total = parts["total"]
        out.append(
            ContextImportance(
                name,
                total.mean,
                total.q1,
                total.q3,
                _spread(parts["context"]),
                _spread(parts["interaction"]),
            )
        )
    return sorted(out, key=lambda c: -c.mean)


def _days(att: Attribution) -> list[DayPoint]:
    d = att.days
    by_day: dict[date, list[int]] = defaultdict(list)
    for i, day in enumerate(d.day):
        by_day[day].append(i)
    out = []
    for day in sorted(by_day):
        rows = by_day[day]
        exposures = int(sum(d.exposures[i] for i in rows))
        matured = int(sum(d.matured[i] for i in rows))
        reward = float(sum(d.reward_sum[i] for i in rows))
        held = [i for i in rows if d.holdout[i]]
        per_variant: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
        for i in rows:
            if not d.holdout[i]:
                per_variant[d.variant_number[i]][0] += d.exposures[i]
                per_variant[d.variant_number[i]][1] += d.reward_sum[i]
        out.append(
            DayPoint(
                date=day,
                exposures=exposures,
                matured=matured,
                reward=reward,
                rate=reward / matured if matured else None,
                variants=[
                    DayVariant(number, int(n), float(r))
                    for number, (n, r) in sorted(per_variant.items())
                ],
                holdout=DayArm(
                    int(sum(d.exposures[i] for i in held)),
                    int(sum(d.matured[i] for i in held)),
                    float(sum(d.reward_sum[i] for i in held)),
                ),
            )
        )
    return out
