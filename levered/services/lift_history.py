"""Lift history: the measured lift (optimized vs holdout, per user) for each UTC day of exposure,
and as it stood at the end of each day, from the stored cells (:mod:`levered.db.lift_history`).

Both series use the measured lift's estimator (:func:`levered.services.results.measured_lift`:
the log-ratio delta method, an interval only with ≥ 100 users per arm). *Daily*: the users
exposed that day and their outcomes of that day's exposures — noisy, but it shows drift (a
novelty effect fading). *Cumulative*: every user exposed up to that day with their outcome
through it; its last point is the results' ``measured_lift``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final
from uuid import UUID

from levered.db import cell_store
from levered.db import lift_history as db
from levered.db.attribution import Arm
from levered.errors import Conflict
from levered.schemas.analysis import LiftArm, LiftHistory, LiftPoint, ModeledLift
from levered.schemas.common import ResponseMeta
from levered.services import cells
from levered.services.observations import target
from levered.services.results import measured_lift
from levered.services.warehouse import Warehouse

DEGRADED: Final = frozenset({"no_reward_metric", "metric_failed", "metric_timeout"})


def _arm(lift_arms: dict[bool, Arm]) -> LiftArm:
    m = measured_lift(lift_arms[False], lift_arms[True])
    return LiftArm(
        optimized_rate=m.optimized_rate,
        holdout_rate=m.holdout_rate,
        optimized_users=m.optimized_users,
        holdout_users=m.holdout_users,
        lift_percent=m.lift_percent,
        ci=m.ci,
        p_value=m.p_value,
    )


def points(
    rows: Sequence[Mapping[str, Any]], modeled_rows: Sequence[Mapping[str, Any]] = ()
) -> list[LiftPoint]:
    """Rows of :data:`levered.db.lift_history.LIFT_DAYS` as daily and cumulative points, each
    with the modeled lift of the last version trained by its end
    (:data:`levered.db.lift_history.MODELED_DAYS`)."""
    versions = sorted(modeled_rows, key=lambda r: r["day"])
    by_day: dict[date, dict[bool, dict[str, float]]] = defaultdict(dict)
    for row in rows:
        by_day[row["day"]][bool(row["holdout"])] = {k: float(row[k]) for k in _FIELDS}
    totals = {held: [0.0, 0.0, 0.0] for held in (False, True)}
    out = []
    empty = {k: 0.0 for k in _FIELDS}
    for day in sorted(by_day):
        arms = {held: by_day[day].get(held, empty) for held in (False, True)}
        daily = {
            held: Arm(int(a["users"]), a["outcome_sum"], a["outcome_sumsq"])
            for held, a in arms.items()
        }
        for held, a in arms.items():
            t = totals[held]
            t[0] += a["new_users"]
            t[1] += a["delta_sum"]
            t[2] += a["delta_sumsq"]
        cumulative = {held: Arm(int(t[0]), t[1], t[2]) for held, t in totals.items()}
        stood = [v for v in versions if v["day"] <= day]
        out.append(
            LiftPoint(
                date=day,
                daily=_arm(daily),
                cumulative=_arm(cumulative),
                modeled=_modeled(stood[-1]) if stood else None,
            )
        )
    return out


def _modeled(row: Mapping[str, Any]) -> ModeledLift | None:
    lift = row["modeled_lift"]
    if not lift:
        return None
    return ModeledLift(
        percent=float(lift["percent"]),
        ci=[float(x) for x in lift["ci"]],
        version=int(row["version"]),
        trained_at=row["trained_at"],
    )


_FIELDS: Final = (
    "users",
    "outcome_sum",
    "outcome_sumsq",
    "new_users",
    "delta_sum",
    "delta_sumsq",
)


async def lift_history(
    wh: Warehouse, organization_id: UUID, optimization_id: UUID, *, meta: ResponseMeta | None
) -> LiftHistory:
    """Extend the stored cells to now (without waiting for a running pass) and read the
    series; without a usable reward metric, no points and a ``note``. 404 for another
    organization's optimization."""
    try:
        optimization, metric = await target(wh, organization_id, optimization_id)
    except Conflict as exc:
        if exc.code not in DEGRADED:
            raise
        return LiftHistory(
            optimization_id=optimization_id,
            reward_type=None,
            points=[],
            data_through=None,
            as_of=datetime.now(UTC),
            note=exc.message,
            meta=meta,
        )
    note = None
    try:
        await cells.extend(wh, organization_id, optimization, metric, wait=False)
    except Conflict as exc:
        if exc.code not in DEGRADED:
            raise
        note = f"the cells could not be extended now ({exc.code}): {exc.message}"
    async with wh.pool.acquire() as conn:
        state = await cell_store.load_state(conn, optimization.id)
        rows = await db.lift_days(conn, optimization.id, bool_metric=metric.reward_type == "bool")
        modeled_rows = await db.modeled_days(conn, optimization.id)
    return LiftHistory(
        optimization_id=optimization_id,
        reward_type=metric.reward_type,
        points=points(rows, modeled_rows),
        data_through=None if state is None else state.frontier,
        as_of=datetime.now(UTC) if state is None else state.as_of,
        note=note,
        meta=meta,
    )
