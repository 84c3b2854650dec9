"""Last-touch attribution in the warehouse, run as the organization, aggregated to cells.

Contract: PRODUCT.md §5; every decision is written down in docs/attribution.md.

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

Python receives aggregated rows only: cells, per-day points and two per-arm user totals for the
cells query; one page of exposures (and their credits) for the observations query.

Temporary files: the cells query groups every attributed exposure by user (for the arms), which
PostgreSQL does by sorting or by a hash table that spills — disk space in proportion to the
exposures, against the tenant role's ``temp_file_limit`` (1 GB, which the tenant cannot raise).
So a large optimization is attributed in *passes* over disjoint hash partitions of its users
(:func:`passes_for`), each its own statement in the same snapshot; every user's exposures and
rewards fall in one pass, so the passes' sums add up to exactly the one-statement result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, Literal
from uuid import UUID

import asyncpg
import msgspec

from levered.db import Connection, sandbox
from levered.db.errors import translate
from levered.errors import Conflict

RewardType = Literal["bool", "numeric"]

DEFAULT_TIMEOUT_S: Final = 300.0
"""Statement timeout of one attribution query (training reads the whole history)."""
BEGINNING: Final = datetime(1, 1, 1, tzinfo=UTC)
"""What ``@start_date`` is bound to when no training window start is given."""
PASS_TEMP_BYTES: Final = 512 * 2**20
"""Temporary-file budget of one attribution pass: half the tenant role's ``temp_file_limit``
(``sandbox.ROLE_SETTINGS``), so an estimate that is off by 2× still fits."""
ROW_TEMP_BYTES: Final = 100
"""Temporary bytes per attributed exposure besides its ``anonymous_id`` and ``context``. Measured
(PostgreSQL 18, 10⁷ exposures, 34 bytes of id and context per row): the one-statement plan
spills 126 bytes per row at its peak (the per-user sort plus the per-day re-sort of the
grouping sets, both of every row's full width), a pass over a hash partition 40–90."""


@dataclass(frozen=True)
class MetricSpec:
    """What attribution needs of a metric (a row of ``metrics``)."""

    sql: str
    anonymous_id_col: str
    timestamp_col: str
    value_col: str | None
    reward_type: RewardType


@dataclass(frozen=True)
class OptimizationSpec:
    """What attribution needs of an optimization: its id, window and context factor names."""

    id: UUID
    conversion_window_hours: float
    context_factors: tuple[str, ...] = ()


SELECT_TARGET: Final = """
SELECT o.id, o.attribution, o.context_factors,
       mt.sql, mt.anonymous_id_col, mt.timestamp_col, mt.value_col, mt.reward_type
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
    )
    if row["sql"] is None:
        return optimization, None
    metric = MetricSpec(
        sql=row["sql"],
        anonymous_id_col=row["anonymous_id_col"],
        timestamp_col=row["timestamp_col"],
        value_col=row["value_col"],
        reward_type=row["reward_type"],
    )
    return optimization, metric


# -- the attribution CTEs ---------------------------------------------------------------------

CREDITED: Final = """reward_rows AS (
    SELECT r.anonymous_id, r."timestamp" AS ts, r.value
    FROM (
{rows_sql}
    ) AS r
    WHERE r."timestamp" <= $4{restriction}
),
credited AS (
    SELECT e.exposure, count(*) AS credited_rows, sum(r.value) AS value_sum
    FROM reward_rows AS r
    CROSS JOIN LATERAL (
        SELECT x.ctid AS exposure
        FROM warehouse.exposures AS x
        WHERE x.optimization_id = $2
          AND x.anonymous_id = r.anonymous_id
          AND x."timestamp" <= r.ts
          AND x."timestamp" >= r.ts - make_interval(secs => $3)
        ORDER BY x."timestamp" DESC
        LIMIT 1
    ) AS e
    GROUP BY e.exposure
)"""
"""Shared CTEs. Parameters: $1 the window start (``@start_date``; the normalized rows drop
rewards before it), $2 optimization id, $3 window in seconds, $4 as-of time.
``r.ts - window ≤ x.timestamp ≤ r.ts`` is the window condition rearranged so the index range
scan can use it; the latest exposure at or before the reward is the only candidate, because
if it is outside the window every earlier one is too."""


def _credited(rows_sql: str, restriction: str = "") -> str:
    return CREDITED.format(rows_sql=rows_sql, restriction=restriction)


# -- cells ------------------------------------------------------------------------------------

CELLS: Final = """WITH {credited},
observations AS (
    SELECT x.anonymous_id, x.variant_number, x.context, x.holdout,
           (x."timestamp" AT TIME ZONE 'UTC')::date AS day,
           x."timestamp" + make_interval(secs => $3) <= $4 AS matured,
           CASE WHEN c.exposure IS NULL THEN 0::float8
                WHEN $5 THEN 1::float8
                ELSE c.value_sum END AS reward
    FROM warehouse.exposures AS x
    LEFT JOIN credited AS c ON c.exposure = x.ctid
    WHERE x.optimization_id = $2 AND x."timestamp" >= $1 AND x."timestamp" <= $4{users}
),
partial AS (
    SELECT CASE WHEN GROUPING(anonymous_id) = 0 THEN 'arm'
                WHEN GROUPING(day) = 0 THEN 'day'
                ELSE 'cell' END AS kind,
           variant_number, context, holdout, day, matured,
           count(*) AS n, sum(reward) AS reward_sum, sum(reward * reward) AS reward_sumsq,
           CASE WHEN $5 THEN max(reward) ELSE sum(reward) END AS outcome
    FROM observations
    GROUP BY GROUPING SETS ((variant_number, context, holdout, matured),
                            (variant_number, holdout, day, matured),
                            (holdout, anonymous_id, matured))
),
labelled AS (
    SELECT p.*,
           CASE WHEN p.kind = 'cell' THEN
               (SELECT coalesce(jsonb_object_agg(k.name, p.context -> k.name), '{{}}'::jsonb)
                FROM unnest($6::text[]) AS k(name)
                WHERE p.context ? k.name)
           END AS cell_context
    FROM partial AS p
)
SELECT kind, variant_number, cell_context AS context, holdout, day,
       CASE WHEN kind = 'arm' THEN count(*) FILTER (WHERE matured)
            ELSE coalesce(sum(n) FILTER (WHERE matured), 0) END AS n,
       CASE WHEN kind = 'arm' THEN coalesce(sum(outcome) FILTER (WHERE matured), 0)
            ELSE coalesce(sum(reward_sum) FILTER (WHERE matured), 0) END AS reward_sum,
       CASE WHEN kind = 'arm' THEN coalesce(sum(outcome * outcome) FILTER (WHERE matured), 0)
            ELSE coalesce(sum(reward_sumsq) FILTER (WHERE matured), 0) END AS reward_sumsq,
       coalesce(sum(n) FILTER (WHERE NOT matured AND kind = 'day'), 0) AS pending
FROM labelled
GROUP BY kind, variant_number, cell_context, holdout, day
HAVING kind <> 'cell' OR bool_or(matured)
ORDER BY 1, 4, 2, 5, 3"""
"""One statement, one pass over the attributed exposures, no materialized intermediate.

``partial`` aggregates the exposures three ways at once (grouping sets): by (variant, raw
context, holdout), by (variant, holdout, UTC day) and by (holdout, user), each split by
matured. The outer query restricts the cells' contexts to the optimization's factor names —
once per raw-context group, not per exposure — and regroups; it turns the per-user groups into
one row per arm (``n`` = users, ``reward_sum``/``reward_sumsq`` = Σ outcome, Σ outcome²). $5 is
"the metric is bool"; $6 the context factor names. Exposures later than $4 are ignored;
exposures younger than the window at $4 are pending (counted per day, never in cells or arms).
In a pass (:data:`IN_PASS`) both the reward rows and the exposures are restricted to the users
of one hash partition.
"""

IN_PASS: Final = "\n      AND (hashtext({alias}.anonymous_id) & 2147483647) % $7 = $8"
"""The users of pass $8 of $7 (a partition by a hash of ``anonymous_id``). Rewards are credited
only to exposures of the same ``anonymous_id``, so restricting both sides to the same users
loses no credit; ``hashtext`` of the same text is the same on both sides."""

COUNT_ATTRIBUTED: Final = """
SELECT count(*) AS exposures,
       coalesce(sum(pg_column_size(anonymous_id) + pg_column_size(context)), 0) AS width
FROM warehouse.exposures
WHERE optimization_id = $1 AND "timestamp" >= $2 AND "timestamp" <= $3
"""
"""What the cells query will read: its exposures and their bytes of id and context (the
columns whose size varies), to size the passes. One scan, no sort."""


def passes_for(exposures: int, width: int) -> int:
    """How many passes attribute ``exposures`` rows whose ids and contexts take ``width`` bytes:
    enough that each pass's estimated temporary files stay within :data:`PASS_TEMP_BYTES`."""
    needed = exposures * ROW_TEMP_BYTES + width
    return max(1, -(-needed // PASS_TEMP_BYTES))


@dataclass(frozen=True)
class Cells:
    """Matured observations aggregated by (variant, context, holdout); parallel lists."""

    variant_number: list[int]
    context: list[dict[str, Any]]
    holdout: list[bool]
    count: list[int]
    reward_sum: list[float]
    reward_sumsq: list[float]


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


@dataclass(frozen=True)
class AttributionResult:
    cells: Cells
    days: Days
    optimized: Arm
    holdout: Arm
    matured: int
    pending: int
    as_of: datetime
    start: datetime | None
    passes: int = 1
    """Statements the cells were computed in (:func:`passes_for`)."""


async def attribute_cells(
    tenant: Connection,
    rows_sql: str,
    reward_type: RewardType,
    optimization: OptimizationSpec,
    *,
    as_of: datetime,
    start: datetime | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> AttributionResult:
    """Attribute and aggregate; ``tenant`` is in :func:`attribution_transaction`.

    ``rows_sql`` is the metric's normalized rows (module doc). Exposures with
    ``start ≤ timestamp ≤ as_of`` take part; ``@start_date`` is bound to ``start`` (or
    :data:`BEGINNING`). Rewards later than ``as_of`` are ignored. One statement counts the
    exposures, then one statement per pass (:func:`passes_for`; usually one) aggregates them;
    ``timeout_s`` applies to each statement.
    """
    first = start or BEGINNING
    args = (
        first,
        optimization.id,
        _window_seconds(optimization),
        as_of,
        reward_type == "bool",
        list(optimization.context_factors),
    )
    (size,) = await _fetch(
        tenant, COUNT_ATTRIBUTED, optimization.id, first, as_of, timeout_s=timeout_s
    )
    passes = passes_for(size["exposures"], size["width"])
    totals = _Totals()
    if passes == 1:
        sql = CELLS.format(credited=_credited(rows_sql), users="")
        totals.add(await _fetch(tenant, sql, *args, timeout_s=timeout_s))
    else:
        sql = CELLS.format(
            credited=_credited(rows_sql, IN_PASS.format(alias="r")), users=IN_PASS.format(alias="x")
        )
        for number in range(passes):
            totals.add(await _fetch(tenant, sql, *args, passes, number, timeout_s=timeout_s))
    return totals.result(as_of, start, passes)


@dataclass
class _Totals:
    """The cells query's rows summed over passes (in the order they first appear, so one pass
    gives the statement's own order). Counts and sums add up: each user is in one pass."""

    rows: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)

    def add(self, rows: list[asyncpg.Record]) -> None:
        for row in rows:
            key = (
                row["kind"],
                row["holdout"],
                row["variant_number"],
                row["day"],
                _context_key(row["context"]),
            )
            sums = [row["n"], row["reward_sum"], row["reward_sumsq"], row["pending"]]
            found = self.rows.get(key)
            if found is None:
                self.rows[key] = [row["context"], *sums]
            else:
                for i, value in enumerate(sums, start=1):
                    found[i] += value

    def result(self, as_of: datetime, start: datetime | None, passes: int) -> AttributionResult:
        cells = Cells([], [], [], [], [], [])
        days = Days([], [], [], [], [], [], [])
        arms = {False: Arm(0, 0.0, 0.0), True: Arm(0, 0.0, 0.0)}
        for (kind, holdout, variant_number, day, _), values in self.rows.items():
            context, n, reward_sum, reward_sumsq, pending = values
            if kind == "cell":
                cells.variant_number.append(variant_number)
                cells.context.append(context)
                cells.holdout.append(holdout)
                cells.count.append(n)
                cells.reward_sum.append(reward_sum)
                cells.reward_sumsq.append(reward_sumsq)
            elif kind == "day":
                days.day.append(day)
                days.variant_number.append(variant_number)
                days.holdout.append(holdout)
                days.exposures.append(n + pending)
                days.matured.append(n)
                days.reward_sum.append(reward_sum)
                days.reward_sumsq.append(reward_sumsq)
            else:
                arms[holdout] = Arm(n, reward_sum, reward_sumsq)
        return AttributionResult(
            cells=cells,
            days=days,
            optimized=arms[False],
            holdout=arms[True],
            matured=sum(days.matured),
            pending=sum(days.exposures) - sum(days.matured),
            as_of=as_of,
            start=start,
            passes=passes,
        )


_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _context_key(context: dict[str, Any] | None) -> bytes | None:
    """A cell context as a hashable key; equal JSON objects give equal keys."""
    return None if context is None else _encode_sorted(context)


# -- observations (one page) ------------------------------------------------------------------

COUNT_EXPOSURES: Final = """
SELECT count(*) FILTER (WHERE "timestamp" + make_interval(secs => $2) <= $3) AS matured,
       count(*) FILTER (WHERE "timestamp" + make_interval(secs => $2) > $3) AS pending
FROM warehouse.exposures
WHERE optimization_id = $1 AND "timestamp" <= $3
"""

PAGE_EXPOSURES: Final = """
SELECT x.ctid AS exposure, x.anonymous_id, x.variant_number, x.variant, x.context,
       x."timestamp", x.holdout
FROM warehouse.exposures AS x
WHERE x.optimization_id = $1 AND x."timestamp" + make_interval(secs => $2) <= $3
ORDER BY x."timestamp" DESC, x.anonymous_id, x.ctid
LIMIT $4 OFFSET $5
"""
"""Matured exposures, newest first; ``ctid`` breaks ties so pages never overlap."""

PAGE_CREDITS: Final = """WITH {credited}
SELECT exposure, credited_rows, value_sum
FROM credited
WHERE exposure = ANY($6::tid[])"""
"""Credits of one page's exposures: only the page's users' reward rows ($5), only from the
page's oldest exposure on (``@start_date``): what the page needs, computed exactly as for
cells — their rewards may still be credited to later exposures outside the page."""


@dataclass(frozen=True)
class ObservationRow:
    anonymous_id: str
    variant_number: int
    variant: dict[str, Any]
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
) -> ObservationPage:
    """One page of matured exposures (newest first) with their attributed reward."""
    window = _window_seconds(optimization)
    counts = await tenant.fetchrow(
        COUNT_EXPOSURES, optimization.id, window, as_of, timeout=_client_timeout(timeout_s)
    )
    assert counts is not None
    page = await tenant.fetch(
        PAGE_EXPOSURES,
        optimization.id,
        window,
        as_of,
        limit,
        offset,
        timeout=_client_timeout(timeout_s),
    )
    credits: dict[Any, asyncpg.Record] = {}
    if page:
        found = await _fetch(
            tenant,
            PAGE_CREDITS.format(
                credited=_credited(rows_sql, "\n      AND r.anonymous_id = ANY($5::text[])")
            ),
            min(row["timestamp"] for row in page),
            optimization.id,
            window,
            as_of,
            sorted({row["anonymous_id"] for row in page}),
            [row["exposure"] for row in page],
            timeout_s=timeout_s,
        )
        credits = {row["exposure"]: row for row in found}
    rows: list[ObservationRow] = []
    for row in page:
        credit = credits.get(row["exposure"])
        if credit is None:
            reward = 0.0
        elif reward_type == "bool":
            reward = 1.0
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
"""The passes run one prepared statement with different $7/$8; from its sixth run PostgreSQL
may switch to a generic plan, which does not see the pass's selectivity (measured: 6 s passes
became 60 s). Planning each run costs milliseconds."""


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


async def _fetch(
    tenant: Connection, sql: str, *args: object, timeout_s: float
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
            f"the reward metric's SQL did not finish within {timeout_s:g} s "
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
            f"the reward metric's SQL failed during attribution: {reason.message}",
            code="metric_failed",
            details=reason.details,
        ) from exc
