"""The reads of one cells pass, in the organization's attribution snapshot.

Every statement here runs on a tenant connection inside
:func:`levered.db.attribution.attribution_transaction` (read-only ``REPEATABLE READ``, row-level
security keyed on the organization, rewards pinned to other optimizations hidden): one snapshot
for the whole pass, so the buckets it re-attributes, the late events it saw and its marker agree.

A *bucket* is one hour of exposure time (:data:`BUCKET`, aligned to UTC hours). Re-attributing a
range of buckets ``[lo, hi)`` needs the exposures in it, the reward rows that can fall in their
windows (``lo ≤ reward.timestamp ≤ hi + window``) and, for last touch, every exposure of the same
users (the ``LATERAL`` probe of :data:`levered.db.attribution.CREDITED`): so a bucket's rows are
the same whichever pass computes them, which is what makes replacing buckets exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg

from levered.db import Connection
from levered.db.attribution import (
    BEGINNING,
    OptimizationSpec,
    RewardType,
    credited_ctes,
    fetch_metric_query,
)
from levered.db.exposure_relation import MANAGED_EXPOSURES, Exposures
from levered.db.sandbox import quote_literal

BUCKET: Final = timedelta(hours=1)
"""Cells are kept per hour of exposure time: the frontier's bucket is re-read on every pass, so
a pass re-reads at most an hour of old exposures besides the new ones."""
ORIGIN: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""``date_bin``'s origin: buckets start on whole UTC hours (so days are unions of buckets)."""
EPOCH: Final = BEGINNING
"""The lower end of a rebuild (all history)."""

CHUNK: Final = """WITH {credited},
observations AS (
    SELECT x.anonymous_id, x.variant_number, x.context, x.holdout,
           date_bin('1 hour', x."timestamp", TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           1 AS n, 0::float8 AS reward, false AS credited{x_dims}
    FROM {exposures} AS x
    WHERE x.optimization_id = $2
      AND x."timestamp" >= $1 AND x."timestamp" < $7 AND x."timestamp" <= $8
    UNION ALL
    SELECT c.anonymous_id, c.variant_number, c.context, c.holdout,
           date_bin('1 hour', c.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           0, CASE WHEN $5 THEN 1::float8 ELSE c.{value} END, true{c_dims}
    FROM credited AS c
    WHERE c.ts >= $1 AND c.ts < $7 AND c.ts <= $8
),
partial AS (
    SELECT GROUPING(anonymous_id) = 0 AS per_user, GROUPING(context) = 0 AS per_cell,
           bucket, variant_number, holdout, context, anonymous_id{dim_flags},
           sum(n) AS n, sum(reward) AS reward_sum, sum(reward * reward) AS reward_sumsq,
           CASE WHEN $5 THEN max(reward) ELSE sum(reward) END AS outcome{partial_counts}
    FROM observations
    GROUP BY GROUPING SETS ((bucket, variant_number, holdout, context),
                            (bucket, holdout, anonymous_id){dim_sets})
)
SELECT 'user' AS kind, bucket, NULL::integer AS variant_number, holdout, NULL::jsonb AS context,
       anonymous_id, n, outcome AS reward_sum, NULL::float8 AS reward_sumsq,
       NULL::bigint[] AS outcome_counts
FROM partial WHERE per_user
UNION ALL
SELECT 'cell', bucket, variant_number, holdout, cell_context, NULL, sum(n)::bigint,
       sum(reward_sum), sum(reward_sumsq), {counts}
FROM (
    SELECT p.*,
           (SELECT coalesce(jsonb_object_agg(k.name, p.context -> k.name), '{{}}'::jsonb)
            FROM unnest($6::text[]) AS k(name)
            WHERE p.context ? k.name) AS cell_context
    FROM partial AS p WHERE p.per_cell
) AS q
GROUP BY bucket, variant_number, holdout, cell_context{dim_rows}
ORDER BY bucket, holdout, anonymous_id"""
"""The cells and per-user outcomes of the buckets ``[$1, $7)``, matured exposures only
(``timestamp ≤ $8``, the new frontier). $1 is also ``@start_date`` (no reward before the range
can be credited inside it), $2 optimization, $3 window in seconds, $4 the newest reward time
that counts (the range's end plus the window, at most the as-of time), $5 "the metric is bool",
$6 the context factor names (a cell keeps only those keys, restricted once per raw-context
group). ``kind = 'user'`` rows: per (bucket, holdout, user), ``n`` matured exposures and their
outcome in ``reward_sum`` (1 if any was credited, or the credited sum), in the order of
``observation_users``' key (a rebuild appends them to it as they come). ``kind = 'dim'`` rows
(an optimization's dimensions, :func:`chunk_sql`): per (bucket, variant, holdout, dimension
value), the dimension's name in ``anonymous_id`` and its value in ``context`` (JSON null when
the exposure did not send the key).

Every exposure comes once with reward 0 and each credited one once more with its reward and
``n = 0``, instead of joining the exposures back to their credits by ``ctid``: with statistics
from before a day of new data (a table of 10⁸ rows is not auto-analyzed for 1 % more), the
planner estimated one exposure in the range and put that join in a nested loop that re-ran
the whole credit aggregation for each of 10⁶ exposures (minutes at 10⁶ history). Without a
join the plan's shape no longer depends on those estimates."""


def chunk_sql(
    rows_sql: str,
    weights: Sequence[float],
    dimensions: Sequence[str] = (),
    exposures: Exposures = MANAGED_EXPOSURES,
) -> str:
    """:data:`CHUNK` for a metric. ``weights``: a weighted metric's outcome weights in declared
    order (empty for bool and numeric metrics). A weighted metric's exposure reward is
    ``value_max``, the weight of its highest-weight credited outcome (``value_sum`` otherwise),
    and its cells count their exposures per declared outcome (``outcome_counts``) by that
    weight: the service keeps weights distinct, and ``credited`` tells an outcome of weight 0
    from failure. ``dimensions``: context keys to break the cells down by besides (one more
    grouping set each, ``kind = 'dim'`` rows). ``exposures``: where the exposures are read."""
    names = [quote_literal(name) for name in dimensions]
    dims = {
        "x_dims": "".join(f", x.context -> {n} AS d{i}" for i, n in enumerate(names)),
        "c_dims": "".join(f", c.context -> {n}" for n in names),
        "dim_flags": "".join(f", GROUPING(d{i}) = 0 AS per_d{i}, d{i}" for i in range(len(names))),
        "dim_sets": "".join(
            f",\n                            (bucket, variant_number, holdout, d{i})"
            for i in range(len(names))
        ),
        "exposures": exposures.relation,
        "dim_rows": "".join(
            f"\nUNION ALL\nSELECT 'dim', bucket, variant_number, holdout, "
            f"coalesce(d{i}, 'null'::jsonb), {n}, n, reward_sum, reward_sumsq, NULL\n"
            f"FROM partial WHERE per_d{i}"
            for i, n in enumerate(names)
        ),
    }
    if not weights:
        return CHUNK.format(
            credited=credited_ctes(rows_sql, exposures=exposures),
            value="value_sum",
            partial_counts="",
            counts="NULL::bigint[]",
            **dims,
        )
    partial = "".join(
        f",\n           count(*) FILTER (WHERE credited AND reward = "
        f"'{float(w)!r}'::float8) AS o{i}"
        for i, w in enumerate(weights)
    )
    counts = "ARRAY[" + ", ".join(f"sum(o{i})::bigint" for i in range(len(weights))) + "]"
    return CHUNK.format(
        credited=credited_ctes(rows_sql, exposures=exposures),
        value="value_max",
        partial_counts=partial,
        counts=counts,
        **dims,
    )


HISTOGRAM: Final = """
SELECT b.bucket, c.n
FROM generate_series(
         date_bin('1 hour',
                  (SELECT min("timestamp") FROM {exposures}
                   WHERE optimization_id = $1 AND "timestamp" >= $2),
                  TIMESTAMPTZ '2000-01-01 00:00:00+00'),
         least($3::timestamptz, $4::timestamptz), interval '1 hour') AS b(bucket)
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM {exposures} AS x
    WHERE optimization_id = $1 AND "timestamp" >= b.bucket
      AND "timestamp" < b.bucket + interval '1 hour'
      AND "timestamp" >= $2 AND "timestamp" < $3 AND "timestamp" <= $4) AS c
WHERE c.n > 0
ORDER BY 1
"""
"""Matured exposures per bucket of a range: one index-only range count per hour from the
range's first exposure on, so nothing is sorted or hashed. (A ``GROUP BY`` over the range
sorted every exposure of a rebuild: at 10⁸ it spilled past the tenant's 1 GB
``temp_file_limit`` and the rebuild failed.) The counts cut the range into chunks of bounded
size (temporary files, memory)."""

HISTOGRAM_SCAN: Final = """
SELECT date_bin('1 hour', "timestamp", TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*) AS n
FROM {exposures} AS x
WHERE optimization_id = $1 AND "timestamp" >= $2 AND "timestamp" < $3 AND "timestamp" <= $4
GROUP BY 1 ORDER BY 1
"""
"""The same counts over a customer's table, which may have no index on the optimization and
time for one range count per hour to use: one scan of the range, hashed by hour (a group per
hour, not per exposure, so nothing spills)."""

ANY_MATURED: Final = """
SELECT EXISTS (SELECT 1 FROM {exposures} AS x
               WHERE optimization_id = $1 AND "timestamp" > $2 AND "timestamp" <= $3)
"""


def unseen(xmin: str, seen_below: str) -> str:
    """SQL: the row with system column ``xmin`` may have been committed after the snapshot of
    a pass whose snapshot xmin was ``seen_below`` (NULL: unknown, so every row counts). The
    callers bound the rows by ``received_at`` (the newest ones) first.

    A transaction id below a snapshot's xmin had ended when the snapshot was taken, so its rows
    were visible to it; one at or above it may not have been. Rows keep 32-bit ids: the epoch
    is the current snapshot's, one less for an id above the current one's low half (the rows
    in question are minutes old, far from a wrap-around). Sound for subtransactions too, unlike
    ``pg_visible_in_snapshot``: a subtransaction's id is above its parent's."""
    x = f"{xmin}::text::bigint"
    now = "(SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint)"
    full = (
        f"(({now} >> 32) << 32) + {x} "
        f"- CASE WHEN {x} > ({now} & 4294967295) THEN 4294967296 ELSE 0 END"
    )
    return f"({seen_below}::bigint IS NULL OR {full} >= {seen_below})"


LATE: Final = f"""
SELECT date_bin('1 hour', "timestamp", TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       max(received_at) AS received
FROM (SELECT "timestamp", received_at, xmin AS x FROM warehouse.exposures
      WHERE received_at > $2 AND optimization_id = $1 AND "timestamp" <= $3
      UNION ALL
      SELECT "timestamp", received_at, xmin FROM warehouse.rewards
      WHERE received_at > $2 AND "timestamp" <= $3
        AND (optimization_id IS NULL OR optimization_id = $1)) AS late
WHERE {unseen("x", "$4")}
GROUP BY 1
"""
"""Buckets of events the previous pass did not see — received after $2 (its marker less the
margin) and not committed before its snapshot (xmin $4) — timed at or before $3 (its as-of
time). Read through the BRIN indexes on ``received_at``: the newest block ranges, not the
table. Rewards are taken from the raw table, not the metric: every reward of the organization
that could count (a superset of what the metric selects)."""

SNAPSHOT_XMIN: Final = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
"""The xmin of the pass's snapshot (what the next pass needs to know what this one saw)."""

MARKER: Final = """
SELECT max(received_at) FROM (
    SELECT max(received_at) AS received_at FROM warehouse.exposures
    WHERE received_at > $2 AND optimization_id = $1
    UNION ALL
    SELECT max(received_at) FROM warehouse.rewards
    WHERE received_at > $2 AND (optimization_id IS NULL OR optimization_id = $1)) AS seen
"""
"""The newest ``received_at`` this snapshot sees among the optimization's events (after $2)."""

PENDING: Final = """
SELECT ("timestamp" AT TIME ZONE 'UTC')::date AS day, variant_number, holdout, count(*) AS n
FROM {exposures} AS x
WHERE optimization_id = $1 AND "timestamp" > $2 AND "timestamp" <= $3
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
"""Exposures whose window is still open at the as-of time $3 (after the frontier $2)."""


@dataclass(frozen=True)
class ChunkRows:
    """What one chunk statement returned: rows for ``observation_cells`` and
    ``observation_users`` (tuples in those tables' column order, minus the optimization id;
    a cell's last element is its ``outcome_counts``, None unless the metric is weighted) and
    ``observation_dimension_cells`` (:data:`DIMENSION_COLUMNS` order)."""

    cells: list[tuple[Any, ...]]
    users: list[tuple[Any, ...]]
    dimensions: list[tuple[Any, ...]] = field(default_factory=list)


DIMENSION_COLUMNS: Final = (
    "bucket",
    "dimension",
    "value",
    "variant_number",
    "holdout",
    "exposures",
    "reward_sum",
    "reward_sumsq",
)


async def any_matured(
    tenant: Connection,
    optimization_id: UUID,
    after: datetime,
    through: datetime,
    exposures: Exposures = MANAGED_EXPOSURES,
) -> bool:
    """Whether an exposure has ``after < timestamp ≤ through`` (newly matured)."""
    sql = ANY_MATURED.format(exposures=exposures.relation)
    return bool(await tenant.fetchval(sql, optimization_id, after, through))


async def late_buckets(
    tenant: Connection,
    optimization_id: UUID,
    received_after: datetime,
    through: datetime,
    seen_below: int | None,
    exposures: Exposures = MANAGED_EXPOSURES,
) -> list[datetime]:
    """Buckets of events unseen by the previous pass (:data:`LATE`) with a time ``≤ through``;
    none on a customer's table, which keeps no arrival times (its reload buffer re-reads)."""
    if not exposures.arrivals:
        return []
    rows = await tenant.fetch(LATE, optimization_id, received_after, through, seen_below)
    return [row["bucket"] for row in rows]


async def snapshot_xmin(tenant: Connection) -> int:
    """:data:`SNAPSHOT_XMIN` of the transaction ``tenant`` is in."""
    return int(await tenant.fetchval(SNAPSHOT_XMIN))


async def marker(
    tenant: Connection,
    optimization_id: UUID,
    received_after: datetime,
    exposures: Exposures = MANAGED_EXPOSURES,
) -> datetime | None:
    """:data:`MARKER`; None on a customer's table (no arrival times)."""
    if not exposures.arrivals:
        return None
    found: datetime | None = await tenant.fetchval(MARKER, optimization_id, received_after)
    return found


async def histogram(
    tenant: Connection,
    optimization_id: UUID,
    lo: datetime,
    hi: datetime,
    frontier: datetime,
    exposures: Exposures = MANAGED_EXPOSURES,
) -> list[tuple[datetime, int]]:
    sql = (HISTOGRAM if exposures.arrivals else HISTOGRAM_SCAN).format(exposures=exposures.relation)
    rows = await tenant.fetch(sql, optimization_id, lo, hi, frontier)
    return [(row["bucket"], int(row["n"])) for row in rows]


async def pending(
    tenant: Connection,
    optimization_id: UUID,
    frontier: datetime,
    as_of: datetime,
    exposures: Exposures = MANAGED_EXPOSURES,
) -> list[dict[str, Any]]:
    rows = await tenant.fetch(
        PENDING.format(exposures=exposures.relation), optimization_id, frontier, as_of
    )
    return [
        {
            "day": row["day"].isoformat(),
            "variant_number": row["variant_number"],
            "holdout": row["holdout"],
            "exposures": int(row["n"]),
        }
        for row in rows
    ]


async def chunk(
    tenant: Connection,
    rows_sql: str,
    reward_type: RewardType,
    optimization: OptimizationSpec,
    *,
    lo: datetime,
    hi: datetime,
    frontier: datetime,
    as_of: datetime,
    timeout_s: float,
    rows_params: tuple[Any, ...] = (),
    weights: Sequence[float] = (),
    exposures: Exposures = MANAGED_EXPOSURES,
) -> ChunkRows:
    """Attribute the matured exposures of buckets ``[lo, hi)`` (module doc, :data:`CHUNK`).

    ``rows_params`` are bound after the chunk's own eight (``$9`` on), for a ``rows_sql``
    that reads them (a connected warehouse's rows, bound as arrays)."""
    window = timedelta(hours=optimization.conversion_window_hours)
    newest_reward = min(hi + window, as_of)
    sql = chunk_sql(
        rows_sql,
        weights if reward_type == "weighted" else (),
        optimization.dimensions,
        exposures,
    )
    rows: list[asyncpg.Record] = await fetch_metric_query(
        tenant,
        sql,
        lo,
        optimization.id,
        window.total_seconds(),
        newest_reward,
        reward_type == "bool",
        list(optimization.context_factors),
        hi,
        frontier,
        *rows_params,
        timeout_s=timeout_s,
        subject=exposures.subject,
    )
    cells: list[tuple[Any, ...]] = []
    users: list[tuple[Any, ...]] = []
    dimensions: list[tuple[Any, ...]] = []
    for row in rows:
        if row["kind"] == "dim":
            dimensions.append(
                (
                    row["bucket"],
                    row["anonymous_id"],
                    row["context"],
                    row["variant_number"],
                    row["holdout"],
                    row["n"],
                    row["reward_sum"],
                    row["reward_sumsq"],
                )
            )
        elif row["kind"] == "cell":
            cells.append(
                (
                    row["bucket"],
                    row["variant_number"],
                    row["holdout"],
                    row["context"],
                    row["n"],
                    row["reward_sum"],
                    row["reward_sumsq"],
                    row["outcome_counts"],
                )
            )
        else:
            users.append((row["bucket"], row["holdout"], row["anonymous_id"], row["reward_sum"]))
    return ChunkRows(cells, users, dimensions)
