"""Last-touch attribution in the warehouse, run as the organization: the shared SQL.

Every decision is written down in docs/attribution.md.

Input is the metric as *normalized rows* — ``(anonymous_id text, "timestamp" timestamptz,
value float8)`` taking one parameter ``$1``, the window start — built by
:func:`levered.services.metrics.metric_rows_sql` (one builder for previews and training; the
service layer hands its SQL to this module). The queries here wrap it: each reward row is
credited to the *latest* exposure of the same ``anonymous_id`` in the optimization with
``exposure.timestamp ≤ reward.timestamp ≤ exposure.timestamp + window``: a ``LATERAL``
subquery ordered by ``timestamp DESC LIMIT 1``, one descent of the ``(optimization_id,
anonymous_id, timestamp)`` index per reward row. Credits are grouped by the exposure's
``ctid`` (the exposure table has no key; a ``ctid`` is stable within the transaction's
snapshot, and the lock held until the transaction ends keeps ``VACUUM FULL``/``CLUSTER`` from
moving rows).

Everything runs on a connection logged in as the organization's role
(:func:`levered.db.sandbox.tenant_session`; row-level security keys on ``session_user``) inside
a read-only ``REPEATABLE READ`` transaction with a statement timeout
(:func:`attribution_transaction`). That transaction also sets
``levered.attribution_optimization``, which makes the rewards policy (migration 0005) hide
rewards pinned to another optimization: the metric's SQL need not output ``optimization_id``.

Python receives aggregated rows only: the cells of a range of buckets
(:mod:`levered.db.cell_passes`, which builds its statements on :data:`CREDITED`), or one page
of exposures and their credits for the observations query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, Literal
from uuid import UUID

import asyncpg
import msgspec

from levered.db import Connection, sandbox
from levered.db.errors import translate
from levered.db.exposure_relation import MANAGED_EXPOSURES, Exposures
from levered.errors import Conflict
from levered.schemas.metrics import Outcome

RewardType = Literal["bool", "numeric", "weighted"]

DEFAULT_TIMEOUT_S: Final = 300.0
"""Statement timeout of one attribution query (training reads the whole history)."""
BEGINNING: Final = datetime(1, 1, 1, tzinfo=UTC)
"""What ``@start_date`` is bound to when no training window start is given."""


@dataclass(frozen=True)
class MetricSpec:
    """What attribution needs of a metric (a row of ``metrics``)."""

    sql: str
    anonymous_id_col: str
    timestamp_col: str
    value_col: str | None
    reward_type: RewardType
    outcomes: tuple[Outcome, ...] = ()
    """Weighted metrics: the outcomes, in declared order (the order of ``outcome_counts``)."""
    name_col: str | None = None

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(o.weight for o in self.outcomes)


def metric_spec(row: asyncpg.Record) -> MetricSpec:
    """A :class:`MetricSpec` from a row with the metrics table's columns."""
    outcomes = row["outcomes"]
    return MetricSpec(
        sql=row["sql"],
        anonymous_id_col=row["anonymous_id_col"],
        timestamp_col=row["timestamp_col"],
        value_col=row["value_col"],
        reward_type=row["reward_type"],
        outcomes=() if outcomes is None else tuple(msgspec.convert(outcomes, list[Outcome])),
        name_col=row["name_col"],
    )


@dataclass(frozen=True)
class OptimizationSpec:
    """What attribution needs of an optimization: its id, window and context factor names,
    and which of its cells training reads (``training_window``, migration 0010)."""

    id: UUID
    conversion_window_hours: float
    context_factors: tuple[str, ...] = ()
    training_window: dict[str, Any] = field(default_factory=lambda: {"type": "all"})
    dimensions: tuple[str, ...] = ()
    """Context keys the cells are also broken down by (migration 0021), not modeled."""
    design_factors: tuple[Mapping[str, Any], ...] = ()
    """The design (``{"name", "levels"}`` per factor): what a customer's exposures table
    names variants by (:mod:`levered.db.native_exposures`)."""


SELECT_TARGET: Final = """
SELECT o.id, o.attribution, o.context_factors, o.training_window, o.dimensions, o.design_factors,
       mt.sql, mt.anonymous_id_col, mt.timestamp_col, mt.value_col, mt.reward_type,
       mt.outcomes, mt.name_col
FROM optimizations AS o
LEFT JOIN metrics AS mt ON mt.id = o.reward_metric_id AND mt.organization_id = o.organization_id
WHERE o.organization_id = $1 AND o.id = $2
"""


async def find_target(
    conn: Connection, organization_id: UUID, optimization_id: UUID
) -> tuple[OptimizationSpec, MetricSpec | None] | None:
    """The organization's optimization and its reward metric (None: no such optimization)."""
    row = await conn.fetchrow(SELECT_TARGET, organization_id, optimization_id)
    if row is None:
        return None
    optimization = OptimizationSpec(
        id=row["id"],
        conversion_window_hours=float(row["attribution"].get("conversion_window_hours", 24.0)),
        context_factors=tuple(str(f["name"]) for f in row["context_factors"]),
        training_window=row["training_window"],
        dimensions=tuple(str(name) for name in row["dimensions"]),
        design_factors=tuple(row["design_factors"]),
    )
    if row["sql"] is None:
        return optimization, None
    return optimization, metric_spec(row)


# -- the attribution CTEs ---------------------------------------------------------------------

CREDITED: Final = """reward_rows AS (
    SELECT r.anonymous_id, r."timestamp" AS ts, r.value
    FROM (
{rows_sql}
    ) AS r
    WHERE r."timestamp" <= $4{restriction}
),
credited AS (
    SELECT e.exposure, e.anonymous_id, e.variant_number, e.context, e.holdout, e.ts,
           count(*) AS credited_rows, sum(r.value) AS value_sum, max(r.value) AS value_max
    FROM reward_rows AS r
    CROSS JOIN LATERAL (
        SELECT {exposure_key} AS exposure, x.anonymous_id, x.variant_number, x.context,
               x.holdout, x."timestamp" AS ts
        FROM {exposures} AS x
        WHERE x.optimization_id = $2
          AND x.anonymous_id = r.anonymous_id
          AND x."timestamp" <= r.ts
          AND x."timestamp" >= r.ts - make_interval(secs => $3)
        ORDER BY x."timestamp" DESC
        LIMIT 1
    ) AS e
    GROUP BY e.exposure, e.anonymous_id, e.variant_number, e.context, e.holdout, e.ts
)"""
"""Shared CTEs. Parameters: $1 the window start (``@start_date``; the normalized rows drop
rewards before it), $2 optimization id, $3 window in seconds, $4 as-of time.
``value_max`` is a weighted metric's reward: its rows' values are outcome weights, and an
exposure's outcome is the highest-weight one among its credited rows (docs/attribution.md).
Each credited exposure comes with its own columns (grouped by, though its ``ctid`` determines
them), so a reader adds it to the exposures instead of joining them back by ``ctid``.
``r.ts - window ≤ x.timestamp ≤ r.ts`` is the window condition rearranged so the index range
scan can use it; the latest exposure at or before the reward is the only candidate, because
if it is outside the window every earlier one is too."""


def credited_ctes(
    rows_sql: str, restriction: str = "", exposures: Exposures = MANAGED_EXPOSURES
) -> str:
    """:data:`CREDITED` around the metric's normalized rows (plus a restriction of them)."""
    return CREDITED.format(
        rows_sql=rows_sql,
        restriction=restriction,
        exposures=exposures.relation,
        exposure_key=exposures.key,
    )


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Days:
    """Per UTC day of exposure × variant × holdout: all exposures, matured ones, their reward."""

    day: list[date]
    variant_number: list[int]
    holdout: list[bool]
    exposures: list[int]
    matured: list[int]
    reward_sum: list[float]
    reward_sumsq: list[float]


@dataclass(frozen=True)
class Arm:
    """Per-user pooled outcomes of one arm (matured exposures only).

    A user's outcome is ``1`` if any of their exposures in the arm was credited a reward, else
    ``0`` (bool metric), or the sum of their exposures' rewards (numeric metric).
    """

    users: int
    outcome_sum: float
    outcome_sumsq: float


# -- observations (one page) ------------------------------------------------------------------

COUNT_EXPOSURES: Final = """
SELECT count(*) FILTER (WHERE "timestamp" + make_interval(secs => $2) <= $3) AS matured,
       count(*) FILTER (WHERE "timestamp" + make_interval(secs => $2) > $3) AS pending
FROM {exposures} AS x
WHERE optimization_id = $1 AND "timestamp" <= $3
"""

PAGE_EXPOSURES: Final = """
SELECT {key} AS exposure, x.anonymous_id, x.variant_number, {variant} AS variant, x.context,
       x."timestamp", x.holdout
FROM {exposures} AS x
WHERE x.optimization_id = $1 AND x."timestamp" + make_interval(secs => $2) <= $3
ORDER BY x."timestamp" DESC, x.anonymous_id, {key}
LIMIT $4 OFFSET $5
"""
"""Matured exposures, newest first; the row key (``ctid``) breaks ties so pages never
overlap."""

PAGE_CREDITS: Final = """WITH {credited}
SELECT exposure, credited_rows, value_sum, value_max
FROM credited
WHERE exposure = ANY($6::{key_type}[])"""
"""Credits of one page's exposures: only the page's users' reward rows ($5), only from the
page's oldest exposure on (``@start_date``): what the page needs, computed exactly as for
cells — their rewards may still be credited to later exposures outside the page."""
PAGE_PARAMS: Final = 6
"""Parameters of :data:`PAGE_CREDITS` before any bound rows."""


@dataclass(frozen=True)
class ObservationRow:
    anonymous_id: str
    variant_number: int
    variant: dict[str, Any] | None
    """None when read from a customer's table: the caller names it by its number."""
    context: dict[str, Any]
    timestamp: datetime
    holdout: bool
    reward: float
    converted: bool


@dataclass(frozen=True)
class ObservationPage:
    rows: list[ObservationRow]
    matured: int
    pending: int
    as_of: datetime


async def observation_page(
    tenant: Connection,
    rows_sql: str,
    reward_type: RewardType,
    optimization: OptimizationSpec,
    *,
    as_of: datetime,
    limit: int,
    offset: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    rows_params: Callable[[datetime], Awaitable[tuple[Any, ...]]] | None = None,
    exposures: Exposures = MANAGED_EXPOSURES,
) -> ObservationPage:
    """One page of matured exposures (newest first) with their attributed reward.

    ``rows_params``: for rows bound as parameters (a connected warehouse), what to bind after
    the credits statement's own :data:`PAGE_PARAMS`, given the page's oldest exposure time.
    ``exposures``: where they are read (a customer's rows come with ``variant`` None)."""
    window = _window_seconds(optimization)
    counts = await tenant.fetchrow(
        COUNT_EXPOSURES.format(exposures=exposures.relation),
        optimization.id,
        window,
        as_of,
        timeout=_client_timeout(timeout_s),
    )
    assert counts is not None
    keyed = exposures.for_page()
    page = await tenant.fetch(
        PAGE_EXPOSURES.format(key=keyed.key, variant=keyed.variant, exposures=keyed.relation),
        optimization.id,
        window,
        as_of,
        limit,
        offset,
        timeout=_client_timeout(timeout_s),
    )
    credits: dict[Any, asyncpg.Record] = {}
    if page:
        oldest = min(row["timestamp"] for row in page)
        extra = () if rows_params is None else await rows_params(oldest)
        found = await fetch_metric_query(
            tenant,
            PAGE_CREDITS.format(
                credited=credited_ctes(
                    rows_sql, "\n      AND r.anonymous_id = ANY($5::text[])", keyed
                ),
                key_type=keyed.row_key_type,
            ),
            oldest,
            optimization.id,
            window,
            as_of,
            sorted({row["anonymous_id"] for row in page}),
            [row["exposure"] for row in page],
            *extra,
            timeout_s=timeout_s,
            subject=keyed.subject,
        )
        credits = {row["exposure"]: row for row in found}
    rows: list[ObservationRow] = []
    for row in page:
        credit = credits.get(row["exposure"])
        if credit is None:
            reward = 0.0
        elif reward_type == "bool":
            reward = 1.0
        elif reward_type == "weighted":
            reward = float(credit["value_max"])
        else:
            reward = float(credit["value_sum"])
        rows.append(
            ObservationRow(
                anonymous_id=row["anonymous_id"],
                variant_number=row["variant_number"],
                variant=row["variant"],
                context=row["context"],
                timestamp=row["timestamp"],
                holdout=row["holdout"],
                reward=reward,
                converted=credit is not None,
            )
        )
    return ObservationPage(rows, counts["matured"], counts["pending"], as_of)


# -- the tenant transaction -------------------------------------------------------------------

SET_ATTRIBUTION_OPTIMIZATION: Final = (
    "SELECT set_config('levered.attribution_optimization', $1, true)"
)
"""Transaction-local: the pinning filter of migration 0005."""
PLAN_EACH_RUN: Final = "SET LOCAL plan_cache_mode = force_custom_plan"
"""A pass runs one prepared statement per chunk of buckets with different bounds; from its sixth
run PostgreSQL may switch to a generic plan, which does not see the chunk's selectivity
(measured on hash-partition passes: 6 s statements became 60 s). Planning each run costs
milliseconds."""


@asynccontextmanager
async def attribution_transaction(
    tenant: asyncpg.Connection, optimization_id: UUID, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> AsyncIterator[asyncpg.Connection]:
    """The sandbox's read-only snapshot (always rolled back) plus the pinning filter.

    ``tenant`` is logged in as the organization (:func:`levered.db.sandbox.tenant_session`).
    The sandbox sets ``statement_timeout``, ``search_path = warehouse`` and ``TimeZone = UTC``
    (days are UTC days) for the transaction.
    """
    async with sandbox.read_only(tenant, sandbox.Limits(timeout_s=timeout_s)):
        await tenant.execute(SET_ATTRIBUTION_OPTIMIZATION, str(optimization_id))
        await tenant.execute(PLAN_EACH_RUN)
        yield tenant


# -- helpers ----------------------------------------------------------------------------------


def _window_seconds(optimization: OptimizationSpec) -> float:
    return float(optimization.conversion_window_hours) * 3600.0


def _client_timeout(timeout_s: float) -> float:
    """asyncpg's own timeout, a little above the server's: a backstop if the SQL changed it."""
    return timeout_s + 5.0


async def fetch_metric_query(
    tenant: Connection,
    sql: str,
    *args: object,
    timeout_s: float,
    subject: str = MANAGED_EXPOSURES.subject,
) -> list[asyncpg.Record]:
    """Run a query that contains the metric's SQL; its failures become a 409 that says why.

    The metric was valid when saved; failing now (a timeout on more data, a changed column
    type) is a state of the stored resource, hence 409 rather than 400. Transient database
    failures stay 503.
    """
    try:
        return await tenant.fetch(sql, *args, timeout=_client_timeout(timeout_s))
    except (asyncpg.QueryCanceledError, TimeoutError) as exc:
        raise Conflict(
            f"{subject} did not finish within {timeout_s:g} s "
            "(statement timeout); make it cheaper, e.g. filter on @start_date",
            code="metric_timeout",
            details={"sqlstate": "57014", "timeout_s": timeout_s},
        ) from exc
    except asyncpg.PostgresError as exc:
        transient = translate(exc)
        if transient is not None:
            raise transient from exc
        reason = sandbox.sql_error(exc)
        raise Conflict(
            f"{subject} failed during attribution: {reason.message}",
            code="metric_failed",
            details=reason.details,
        ) from exc
