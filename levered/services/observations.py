"""Observations: the cells training and results read, and the observations page of the API.

Training and results read the stored, incrementally extended cells (:func:`stored`,
:mod:`levered.services.cells`); :func:`attribute` computes the same from scratch. All of them
run the organization's reward metric in the warehouse, as the organization
(:meth:`levered.services.warehouse.Warehouse.session`), with last-touch attribution done in SQL
(:mod:`levered.db.attribution`). The metric's SQL is normalized by the one builder metrics
use everywhere, :func:`levered.services.metrics.metric_rows_sql`. Decisions and exact formulas:
docs/attribution.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import numpy as np
import numpy.typing as npt

from levered.bandit.cells import NO_CONTEXT, Cells
from levered.bandit.variants import VariantSpace
from levered.db import attribution as db
from levered.db import cell_passes as passes
from levered.db import cell_store
from levered.db.attribution import Arm, Days, MetricSpec, OptimizationSpec, RewardType
from levered.errors import Conflict, NotFound
from levered.schemas.common import ResponseMeta
from levered.schemas.metrics import Outcome
from levered.schemas.observations import Observation, ObservationPage
from levered.services import cells as cells_service
from levered.services import reward_source
from levered.services.warehouse import Warehouse

TRAINING_TIMEOUT_S: Final = db.DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Attribution:
    """What training and results read: cells, per-arm user totals, daily series, counts.

    ``cells`` has one row per (variant, context cell, holdout) — holdout exposures are real
    observations of the baseline, so they are in ``cells`` too; ``holdout[i]`` says whether row
    ``i`` is holdout traffic (``cells.variant_number[~holdout]`` etc. for optimized traffic only).
    ``context`` of a cell keeps only the optimization's context factors. With a decaying
    training window, ``cells`` holds weighted sums (fractional counts).
    """

    optimization: OptimizationSpec
    reward_type: RewardType
    cells: Cells
    holdout: npt.NDArray[np.bool_]
    optimized_users: Arm
    holdout_users: Arm
    days: Days
    matured: int
    pending: int
    as_of: datetime
    start: datetime | None
    data_through: datetime | None = None
    """The maturity frontier: exposures up to it are observed (as_of − conversion window)."""
    window: dict[str, Any] | None = None
    """The training window the cells were read with (None: all history, unweighted)."""
    marker: datetime | None = None
    """The newest ``received_at`` the stored cells have seen (late-data detection)."""
    seen_below: int | None = None
    """The xmin of the snapshot the cells were last extended in (late-data detection)."""
    outcomes: tuple[Outcome, ...] = ()
    """A weighted metric's outcomes (declared order)."""
    outcome_counts: dict[int, list[int]] = field(default_factory=dict)
    """A weighted metric: per variant number, its exposures (holdout included, like the cells)
    per declared outcome; failure is the rest of the variant's exposures."""


async def attribute(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    as_of: datetime | None = None,
    start: datetime | None = None,
    timeout_s: float = TRAINING_TIMEOUT_S,
) -> Attribution:
    """Attribute the optimization's matured exposures from scratch, stored cells untouched
    (``start ≤ timestamp``, window closed by ``as_of``, default now): the same chunk
    statements as a rebuild of the stored cells, summed in memory. For a past ``as_of`` and
    for checking the stored cells; training and results read those (:func:`stored`).

    404 for an unknown or another organization's optimization; 409 ``no_reward_metric``,
    ``metric_failed`` or ``metric_timeout``.
    """
    as_of = as_of or datetime.now(UTC)
    optimization, metric = await target(wh, organization_id, optimization_id)
    frontier = as_of - timedelta(hours=optimization.conversion_window_hours)
    bool_metric = metric.reward_type == "bool"
    cells: dict[tuple[Any, ...], list[Any]] = {}
    days: dict[tuple[Any, ...], list[float]] = {}
    users: dict[tuple[bool, str], float] = {}
    mix: dict[int, list[int]] = {}
    async with (
        reward_source.open_source(wh, organization_id, metric, timeout_s, optimization) as source,
        reward_source.snapshot(wh, organization_id, optimization.id, source, timeout_s) as tenant,
    ):
        lo = start or passes.EPOCH
        hi = cells_service.floor_bucket(frontier) + passes.BUCKET
        async for rows, _ in cells_service.attributed_chunks(
            tenant, source, optimization, metric, [(lo, hi)],
            frontier=frontier, as_of=as_of, timeout_s=timeout_s, at_least_one=True,
        ):  # fmt: skip
            for bucket, variant, held, context, n, r, rr, counts in rows.cells:
                _add(cells, (variant, _key(context), held), [context, n, r, rr])
                if counts is not None:
                    had = mix.get(variant, [0] * len(counts))
                    mix[variant] = [a + b for a, b in zip(had, counts, strict=True)]
                day = bucket.astimezone(UTC).date()
                _add(days, (day, variant, held), [0, n, r, rr])
            for _, held, anonymous_id, outcome in rows.users:
                key = (held, anonymous_id)
                old = users.get(key)
                users[key] = (
                    outcome if old is None else max(old, outcome) if bool_metric else old + outcome
                )
        pending = await passes.pending(
            tenant, optimization.id, max(frontier, lo), as_of, source.exposures
        )
    for p in pending:
        _add(
            days,
            (date.fromisoformat(p["day"]), p["variant_number"], p["holdout"]),
            [p["exposures"], 0, 0.0, 0.0],
        )
    arms = {held: _arm(o for (h, _), o in users.items() if h == held) for held in (False, True)}
    return dataclasses.replace(
        _assemble(
            optimization,
            metric.reward_type,
            [(k[0], v[0], k[2], *v[1:]) for k, v in cells.items()],
            days,
            arms,
            as_of,
            start,
            frontier,
            None,
        ),
        outcomes=metric.outcomes,
        outcome_counts=mix,
    )


async def stored(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    rebuild: bool = False,
    wait: bool = True,
    windowed: bool = True,
    timeout_s: float = TRAINING_TIMEOUT_S,
) -> Attribution:
    """Extend the stored cells to now (:func:`levered.services.cells.extend`) and read them.

    ``windowed``: apply the optimization's training window (what training fits); results and
    the measured lift read all history. With ``wait`` False, a pass already running elsewhere
    is not waited for: the cells are read as that pass's predecessor left them.
    """
    optimization, metric = await target(wh, organization_id, optimization_id)
    done = await cells_service.extend(
        wh,
        organization_id,
        optimization,
        metric,
        rebuild=rebuild,
        wait=wait,
        timeout_s=timeout_s,
    )
    async with wh.pool.acquire() as app:
        state = (
            done.state if done is not None else await cell_store.load_state(app, optimization.id)
        )
        if state is None:  # another process is building the first cells right now
            return await attribute(wh, organization_id, optimization_id, timeout_s=timeout_s)
        window = optimization.training_window if windowed else {"type": "all"}
        start, half_life_s = read_window(window, state.as_of)
        rows = await cell_store.read_cells(
            app, optimization.id, start=start, as_of=state.as_of, half_life_s=half_life_s
        )
        day_rows = await cell_store.read_days(app, optimization.id)
        mix = (
            await cell_store.read_outcomes(app, optimization.id, start=start)
            if metric.outcomes
            else {}
        )
    days: dict[tuple[Any, ...], list[float]] = {}
    for row in day_rows:
        _add(
            days,
            (row["day"], row["variant_number"], row["holdout"]),
            [0, row["n"], row["reward_sum"], row["reward_sumsq"]],
        )
    for p in state.pending:
        _add(
            days,
            (date.fromisoformat(p["day"]), p["variant_number"], p["holdout"]),
            [p["exposures"], 0, 0.0, 0.0],
        )
    cells = [
        (
            r["variant_number"],
            r["context"],
            r["holdout"],
            r["n"],
            r["reward_sum"],
            r["reward_sumsq"],
        )
        for r in rows
    ]
    return dataclasses.replace(
        _assemble(
            optimization,
            metric.reward_type,
            cells,
            days,
            {False: state.optimized, True: state.holdout},
            state.as_of,
            None if window["type"] != "days" else start,
            state.frontier,
            window,
            state.marker,
            state.seen_below,
        ),
        outcomes=metric.outcomes,
        outcome_counts=mix,
    )


def read_window(window: dict[str, Any], as_of: datetime) -> tuple[datetime, float | None]:
    """(first bucket read, half-life in seconds or None) of a training window."""
    if window.get("type") == "days":
        return as_of - timedelta(days=float(window["days"])), None
    if window.get("type") == "decay":
        return passes.EPOCH, float(window["half_life_days"]) * 86400.0
    return passes.EPOCH, None


def _add(into: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], values: list[Any]) -> None:
    found = into.get(key)
    if found is None:
        into[key] = values
        return
    for i in range(len(values)):
        if not isinstance(values[i], dict):
            found[i] += values[i]


def _key(context: dict[str, Any]) -> str:
    return repr(sorted(context.items()))


def _arm(outcomes: Iterable[float]) -> Arm:
    values = list(outcomes)
    return Arm(len(values), float(sum(values)), float(sum(v * v for v in values)))


def _assemble(
    optimization: OptimizationSpec,
    reward_type: RewardType,
    cells: list[tuple[Any, ...]],
    days: dict[tuple[Any, ...], list[Any]],
    arms: dict[bool, Arm],
    as_of: datetime,
    start: datetime | None,
    data_through: datetime | None,
    window: dict[str, Any] | None,
    marker: datetime | None = None,
    seen_below: int | None = None,
) -> Attribution:
    """Cells ``(variant, context, holdout, n, Σr, Σr²)`` and days ``(day, variant, holdout) →
    [pending, matured, Σr, Σr²]`` as an :class:`Attribution`."""
    cells.sort(key=lambda c: (c[2], c[0], _key(c[1])))
    by_day = Days([], [], [], [], [], [], [])
    for (day, variant, held), (waiting, n, r, rr) in sorted(days.items()):
        by_day.day.append(day)
        by_day.variant_number.append(variant)
        by_day.holdout.append(held)
        by_day.exposures.append(int(waiting + n))
        by_day.matured.append(int(n))
        by_day.reward_sum.append(float(r))
        by_day.reward_sumsq.append(float(rr))
    matured = sum(by_day.matured)
    return Attribution(
        optimization=optimization,
        reward_type=reward_type,
        cells=_bandit_cells(cells),
        holdout=np.asarray([c[2] for c in cells], dtype=np.bool_),
        optimized_users=arms[False],
        holdout_users=arms[True],
        days=by_day,
        matured=matured,
        pending=sum(by_day.exposures) - matured,
        as_of=as_of,
        start=start,
        data_through=data_through,
        window=window,
        marker=marker,
        seen_below=seen_below,
    )


async def list_observations(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    page: int,
    size: int,
    meta: ResponseMeta,
    as_of: datetime | None = None,
) -> ObservationPage:
    """One page of matured exposures, newest first, with their attributed reward."""
    as_of = as_of or datetime.now(UTC)
    optimization, metric = await target(wh, organization_id, optimization_id)
    timeout_s = wh.limits.timeout_s
    async with (
        reward_source.open_source(wh, organization_id, metric, timeout_s, optimization) as source,
        reward_source.snapshot(wh, organization_id, optimization.id, source, timeout_s) as tenant,
    ):
        fetch = source.fetch

        async def bound(oldest: datetime) -> tuple[Any, ...]:
            assert fetch is not None
            return await fetch(oldest, as_of)

        found = await db.observation_page(
            tenant,
            source.rows_sql_after(db.PAGE_PARAMS),
            metric.reward_type,
            optimization,
            as_of=as_of,
            limit=size,
            offset=(page - 1) * size,
            timeout_s=timeout_s,
            rows_params=None if fetch is None else bound,
            exposures=source.exposures,
        )
    space = VariantSpace.of(optimization.design_factors)
    observations = [
        Observation(
            anonymous_id=row.anonymous_id,
            variant_number=row.variant_number,
            variant=space.variant(row.variant_number) if row.variant is None else row.variant,
            context=row.context,
            timestamp=row.timestamp,
            holdout=row.holdout,
            reward=row.reward,
            converted=row.converted,
        )
        for row in found.rows
    ]
    return ObservationPage(
        observations, page, size, found.matured, found.pending, found.as_of, meta
    )


async def target(
    wh: Warehouse, organization_id: UUID, optimization_id: UUID
) -> tuple[OptimizationSpec, MetricSpec]:
    async with wh.pool.acquire() as admin:
        found = await db.find_target(admin, organization_id, optimization_id)
    if found is None:
        raise NotFound(f"no optimization {optimization_id} in this organization")
    optimization, metric = found
    if metric is None:
        raise Conflict(
            "this optimization has no reward metric, so nothing can be attributed to its "
            "exposures; link one with PATCH /api/v2/optimizations/{id} "
            '{"reward_metric_id": "..."}',
            code="no_reward_metric",
        )
    return optimization, metric


def _bandit_cells(cells: list[tuple[Any, ...]]) -> Cells:
    """Rows ``(variant, context, holdout, n, Σr, Σr²)`` as :class:`levered.bandit.cells.Cells`
    (contexts deduplicated; an empty context is "no context")."""
    contexts: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    context_index = np.empty(len(cells), dtype=np.int64)
    for i, (_, context, *_rest) in enumerate(cells):
        if not context:
            context_index[i] = NO_CONTEXT
            continue
        key = _key(context)
        position = index.get(key)
        if position is None:
            position = index[key] = len(contexts)
            contexts.append(context)
        context_index[i] = position
    return Cells.of(
        [c[0] for c in cells],
        [float(c[3]) for c in cells],
        [float(c[4]) for c in cells],
        [float(c[5]) for c in cells],
        context_index,
        contexts,
    )
