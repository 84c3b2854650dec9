"""Progress: how far an optimization is from a decision, and a rough time to one.

Everything is read off the results (:func:`levered.services.results.results`: stored cells and
the current version's posterior summary), so it costs what a results request costs.

**Expected time to decision — the z-scaling method.** The leader L is the variant with the
highest prob_best, R the runner-up. Their posterior means m and 95 % intervals give standard
deviations sd ≈ (hi − lo) / (2 · 1.96), and the separation z = (m_L − m_R) / √(sd_L² + sd_R²).
The leader counts as certain at prob_best ≥ threshold τ; taking the two-variant case, that is
z ≥ z* = Φ⁻¹(τ). A posterior's sd shrinks like 1/√n with n observations, so if the gap stays
what it is now, the observations must grow by the factor (z* / z)²: n · ((z*/z)² − 1) more,
which at the recent rate (matured exposures per day over the last 7 days) takes
``expected_days_to_decision`` days. Assumptions, and so limits: the gap is the true one (a
smaller true gap takes longer), traffic keeps its rate and mix, and only the runner-up competes
(with several close variants prob_best is lower than the pairwise certainty, so the estimate is
optimistic). No estimate without a trained model, before the first matured observation (the
posterior is the prior: there is no n to scale), for a tie (z ≤ 0) or without traffic.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Final
from uuid import UUID

from levered.schemas.analysis import ArmProgress, Progress
from levered.schemas.common import ResponseMeta
from levered.schemas.optimizations import Status
from levered.schemas.results import Results, VariantResult
from levered.services import optimizations as optimizations_service
from levered.services import results as results_service
from levered.services.warehouse import Warehouse

Z95: Final = 1.959963984540054
RATE_DAYS: Final = 7
"""The traffic rate is the observations of the last this many days with data."""
MAX_VARIANTS: Final = 10_000


def progress_of(
    results: Results,
    status: Status,
    *,
    threshold: float,
    limit: int,
    meta: ResponseMeta | None = None,
) -> Progress:
    """The progress document from a results document (module doc for the method)."""
    days = results.time_series
    started = None if not days else datetime.combine(days[0].date, datetime.min.time(), tzinfo=UTC)
    running = 0.0 if started is None else (results.as_of - started).total_seconds() / 86400.0
    ranked = sorted(
        results.variants,
        key=lambda v: (-(v.prob_best if v.prob_best is not None else -1.0), v.number),
    )
    arms = [
        ArmProgress(
            number=v.number, variant_key=v.variant_key, exposures=v.exposures, prob_best=v.prob_best
        )
        for v in ranked
    ]
    leader = ranked[0] if ranked and ranked[0].prob_best is not None else None
    rate = _daily_rate(results, running)
    n = sum(v.exposures for v in results.variants)
    decided = leader is not None and (leader.prob_best or 0.0) >= threshold
    need: int | None = None
    eta: float | None = None
    if leader is None:
        method = "no estimate: the model is not trained yet"
    elif decided:
        need, eta = 0, 0.0
        method = f"decided: the leader's prob_best is at least {threshold:g}"
    elif len(ranked) < 2 or leader.expected_reward is None or ranked[1].expected_reward is None:
        method = "no estimate: no runner-up to compare the leader with"
    elif n == 0:  # the model is at its prior: no count to scale from
        method = "no estimate: no matured observations yet (the model is at its prior)"
    else:
        need, method = _observations_needed(leader, ranked[1], threshold, n)
        if need is not None and rate:
            eta = need / rate
        elif need is not None:
            method += "; no recent traffic to turn it into days"
    return Progress(
        optimization_id=results.optimization_id,
        status=status,
        started_at=started,
        days_running=max(running, 0.0),
        optimized_users=results.measured_lift.optimized_users,
        holdout_users=results.measured_lift.holdout_users,
        arms=arms[:limit],
        leader=None if leader is None else leader.number,
        leader_prob_best=None if leader is None else leader.prob_best,
        threshold=threshold,
        certainty=None if leader is None else min(1.0, (leader.prob_best or 0.0) / threshold),
        decided=decided,
        daily_observations=rate,
        observations_to_decision=need,
        expected_days_to_decision=eta,
        method=method,
        as_of=results.as_of,
        meta=meta,
    )


def _observations_needed(
    leader: VariantResult,
    runner_up: VariantResult,
    threshold: float,
    n: int,
) -> tuple[int | None, str]:
    lead, second = leader.expected_reward, runner_up.expected_reward
    assert lead is not None and second is not None
    sd = math.hypot((lead.hi - lead.lo) / (2 * Z95), (second.hi - second.lo) / (2 * Z95))
    gap = lead.mean - second.mean
    if sd <= 0.0 or gap <= 0.0:
        return None, "no estimate: the leader and the runner-up are tied"
    z = gap / sd
    target = NormalDist().inv_cdf(threshold)
    factor = (target / z) ** 2
    if factor <= 1.0:  # the pair is separated; the rest of the field keeps prob_best down
        return 0, (
            f"z-scaling: leader vs runner-up already separated (z = {z:.2f} ≥ {target:.2f}); "
            "other close variants keep the leader's prob_best below the threshold"
        )
    need = math.ceil(n * (factor - 1.0))
    return need, (
        f"z-scaling: leader vs runner-up z = {z:.2f}, certain at z = {target:.2f}; the "
        f"{n:,} observations must grow {factor:.2f}-fold if the gap holds"
    )


def _daily_rate(results: Results, running_days: float) -> float | None:
    """Exposures per day over the last :data:`RATE_DAYS` days (fewer when younger)."""
    if not results.time_series or running_days <= 0:
        return None
    since = (results.as_of - timedelta(days=RATE_DAYS)).date()
    recent = sum(d.exposures for d in results.time_series if d.date > since)
    span = min(float(RATE_DAYS), running_days)
    return recent / span if recent else None


async def progress(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    threshold: float,
    limit: int,
    meta: ResponseMeta,
) -> Progress:
    """404 for another organization's optimization."""
    optimization = await optimizations_service.get_optimization(
        wh.pool, organization_id, optimization_id
    )
    found = await results_service.results(
        wh, organization_id, optimization_id, limit=MAX_VARIANTS, meta=meta
    )
    return progress_of(found, optimization.status, threshold=threshold, limit=limit, meta=meta)
