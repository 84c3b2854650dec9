"""The stored observation cells (migrations 0010, 0015, 0019): watermark, a pass's writes, reads.

App-owned tables (the tenant role never sees them), every query keyed by an optimization the
service layer has already resolved inside the caller's organization. A pass's write
(:func:`stage`, :meth:`Staging.add`, :func:`finish_pass`) is one transaction: it replaces the
re-attributed buckets' cells and per-user outcomes, adds their change to the per-user totals
(``observation_user_totals``) and the arm totals of the measured lift, and moves the
watermark. A crash before its commit leaves the previous cells and watermark as they were; a
rerun replaces the same buckets again, so nothing is counted twice.

A rebuild deletes the optimization's rows first and writes each chunk's per-user rows straight
into ``observation_users`` (chunks come in bucket order, each sorted by the key, so the rows
append to the primary key): staging 10⁸ rows and inserting them with one sort cost two 13-minute
statements at 10⁸ exposures (benchmarks/README.md, "Training").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from levered.db import Connection
from levered.db.attribution import Arm
from levered.db.cell_passes import DIMENSION_COLUMNS, ChunkRows

SELECT_STATE: Final = """
SELECT fingerprint, as_of, frontier, marker, seen_below, passes, rebuilt_at, updated_at, pending,
       optimized_users, optimized_sum, optimized_sumsq,
       holdout_users, holdout_sum, holdout_sumsq
FROM observation_state WHERE optimization_id = $1
"""

LOCK: Final = "SELECT pg_advisory_lock(hashtextextended('levered.cells:' || $1::text, 0))"
TRY_LOCK: Final = "SELECT pg_try_advisory_lock(hashtextextended('levered.cells:' || $1::text, 0))"
UNLOCK: Final = "SELECT pg_advisory_unlock(hashtextextended('levered.cells:' || $1::text, 0))"
"""One pass at a time per optimization (session locks on a dedicated connection: the pass reads
for a while on a tenant connection before it writes)."""

PASS_WORK_MEM: Final = "64MB"
"""Sort and hash memory of an incremental pass's statements (``SET LOCAL``): the ≈ 10⁶ changed
users of a busy day are hashed and joined in memory instead of in temporary-file batches."""
REBUILD_WORK_MEM: Final = "256MB"
"""Sort memory of a rebuild's per-user totals: one sort of every (user, bucket) row — 10⁸ at 10⁸
exposures, ≈ 7 GB — merged from ≈ 30 runs in one pass; with the default 4 MB, from ≈ 2,000 runs
in several passes (each re-reading and re-writing everything: super-linear)."""

STAGE: Final = """
CREATE TEMP TABLE pass_users (bucket timestamptz, holdout boolean, anonymous_id text,
                              outcome double precision) ON COMMIT DROP;
CREATE TEMP TABLE pass_cells (bucket timestamptz, variant_number integer, holdout boolean,
                              context jsonb, exposures bigint, reward_sum double precision,
                              reward_sumsq double precision, outcome_counts bigint[])
    ON COMMIT DROP;
CREATE TEMP TABLE pass_dimensions (bucket timestamptz, dimension text, value jsonb,
                                   variant_number integer, holdout boolean, exposures bigint,
                                   reward_sum double precision, reward_sumsq double precision)
    ON COMMIT DROP
"""
"""A pass's new rows, staged chunk by chunk (memory stays one chunk) until its final write."""

USER_COLUMNS: Final = ("bucket", "holdout", "anonymous_id", "outcome")
CELL_COLUMNS: Final = (
    "bucket",
    "variant_number",
    "holdout",
    "context",
    "exposures",
    "reward_sum",
    "reward_sumsq",
    "outcome_counts",
)

PASS_DELTA: Final = """
CREATE TEMP TABLE pass_delta ON COMMIT DROP AS
SELECT holdout, anonymous_id, sum(b)::bigint AS buckets, sum(c)::bigint AS credited,
       sum(s) AS outcome_sum
FROM (
    SELECT u.holdout, u.anonymous_id, -1 AS b, -(u.outcome > 0)::int AS c, -u.outcome AS s
    FROM observation_users AS u
    JOIN unnest($2::timestamptz[], $3::timestamptz[]) AS r(lo, hi)
      ON u.bucket >= r.lo AND u.bucket < r.hi
    WHERE u.optimization_id = $1
    UNION ALL
    SELECT holdout, anonymous_id, 1, (outcome > 0)::int, outcome FROM pass_users) AS d
GROUP BY holdout, anonymous_id
HAVING sum(b) <> 0 OR sum(c) <> 0 OR sum(s) <> 0
"""
"""What the pass changes in each user's totals: their staged rows minus their stored rows in
the replaced buckets (a range scan of the bucket-first primary key). Users whose rows come
back unchanged — most of the frontier bucket's — drop out."""

_OUTCOME: Final = "CASE WHEN {b} <= 0 THEN NULL WHEN $2 THEN ({c} > 0)::int::float8 ELSE {s} END"
"""A user's outcome from their totals: none without rows, "any credited" for a bool metric,
the sum for a numeric one."""

APPLY_DELTA: Final = """
WITH moved AS (
    INSERT INTO observation_user_totals AS t
        (optimization_id, holdout, anonymous_id, buckets, credited, outcome_sum)
    SELECT $1, holdout, anonymous_id, buckets, credited, outcome_sum FROM pass_delta
    ORDER BY holdout, anonymous_id
    ON CONFLICT (optimization_id, holdout, anonymous_id) DO UPDATE
    SET buckets = t.buckets + EXCLUDED.buckets, credited = t.credited + EXCLUDED.credited,
        outcome_sum = t.outcome_sum + EXCLUDED.outcome_sum
    RETURNING t.holdout, t.anonymous_id, t.buckets, t.credited, t.outcome_sum
), outcomes AS (
    SELECT m.holdout, {before} AS before, {after} AS after
    FROM moved AS m JOIN pass_delta AS d USING (holdout, anonymous_id)
)
SELECT holdout, count(after) - count(before) AS users,
       coalesce(sum(after), 0) - coalesce(sum(before), 0) AS outcome_sum,
       coalesce(sum(after * after), 0) - coalesce(sum(before * before), 0) AS outcome_sumsq
FROM outcomes GROUP BY holdout
""".format(
    before=_OUTCOME.format(
        b="m.buckets - d.buckets",
        c="m.credited - d.credited",
        s="m.outcome_sum - d.outcome_sum",
    ),
    after=_OUTCOME.format(b="m.buckets", c="m.credited", s="m.outcome_sum"),
)
"""Add the deltas to the users' totals (one upsert per changed user: an index probe into a
table of users, not of their history) and return how the arm totals move. The totals before
are the returned ones minus the delta, so each user is probed once; in key order, so the
probes walk the index and the heap (filled in key order by the rebuild) forward."""

DROP_EMPTY: Final = """
DELETE FROM observation_user_totals AS t USING pass_delta AS d
WHERE t.optimization_id = $1 AND t.holdout = d.holdout AND t.anonymous_id = d.anonymous_id
  AND d.buckets < 0 AND t.buckets <= 0
"""
"""Users whose last rows the pass removed leave the table (they count nowhere)."""

ALL_TOTALS: Final = """
WITH per_user AS (
    INSERT INTO observation_user_totals
        (optimization_id, holdout, anonymous_id, buckets, credited, outcome_sum)
    SELECT $1, holdout, anonymous_id, count(*), count(*) FILTER (WHERE outcome > 0),
           sum(outcome)
    FROM observation_users WHERE optimization_id = $1
    GROUP BY holdout, anonymous_id ORDER BY holdout, anonymous_id
    RETURNING holdout, {outcome} AS outcome
)
SELECT holdout, count(outcome) AS users, coalesce(sum(outcome), 0) AS outcome_sum,
       coalesce(sum(outcome * outcome), 0) AS outcome_sumsq
FROM per_user GROUP BY holdout
""".format(outcome=_OUTCOME.format(b="buckets", c="credited", s="outcome_sum"))
"""A rebuild: every user's totals from the rows it wrote (one sort), inserted in key order
(appends to the primary key, not random inserts), and the arm totals they add up to."""

DELETE_CELLS_IN: Final = """
DELETE FROM {table} AS t USING unnest($2::timestamptz[], $3::timestamptz[]) AS r(lo, hi)
WHERE t.optimization_id = $1 AND t.bucket >= r.lo AND t.bucket < r.hi
"""
DELETE_ALL: Final = "DELETE FROM {table} WHERE optimization_id = $1"

INSERT_USERS: Final = """
INSERT INTO observation_users (optimization_id, bucket, holdout, anonymous_id, outcome)
SELECT $1, bucket, holdout, anonymous_id, outcome FROM pass_users
ORDER BY bucket, holdout, anonymous_id
"""
"""In key order: the rows go into the primary key as appends, page by page, not as random
inserts across the buckets of a chunk."""
INSERT_DIMENSIONS: Final = f"""
INSERT INTO observation_dimension_cells (optimization_id, {", ".join(DIMENSION_COLUMNS)})
SELECT $1, {", ".join(DIMENSION_COLUMNS).replace("value", "coalesce(value, 'null'::jsonb)")}
FROM pass_dimensions
"""
"""A value staged as NULL is JSON null (the key was not sent: jsonb ``null`` decodes to None)."""
STORED_TABLES: Final = (
    "observation_cells",
    "observation_dimension_cells",
    "observation_users",
    "observation_user_totals",
)
"""What a rebuild deletes before it writes (``observation_state`` is upserted at the end)."""
INSERT_CELLS: Final = """
INSERT INTO observation_cells (optimization_id, bucket, variant_number, holdout, context,
                               exposures, reward_sum, reward_sumsq, outcome_counts)
SELECT $1, bucket, variant_number, holdout, context, exposures, reward_sum, reward_sumsq,
       outcome_counts
FROM pass_cells
"""

UPSERT_STATE: Final = """
INSERT INTO observation_state AS s (
    optimization_id, organization_id, fingerprint, as_of, frontier, marker, seen_below,
    optimized_users, optimized_sum, optimized_sumsq, holdout_users, holdout_sum, holdout_sumsq,
    pending, passes)
VALUES ($1, $2, $3, $4, $5, $6, $15, $7, $8, $9, $10, $11, $12, $13, 1)
ON CONFLICT (optimization_id) DO UPDATE SET
    fingerprint = EXCLUDED.fingerprint, as_of = EXCLUDED.as_of, frontier = EXCLUDED.frontier,
    marker = EXCLUDED.marker, seen_below = EXCLUDED.seen_below,
    optimized_users = EXCLUDED.optimized_users, optimized_sum = EXCLUDED.optimized_sum,
    optimized_sumsq = EXCLUDED.optimized_sumsq, holdout_users = EXCLUDED.holdout_users,
    holdout_sum = EXCLUDED.holdout_sum, holdout_sumsq = EXCLUDED.holdout_sumsq,
    pending = EXCLUDED.pending, passes = s.passes + 1,
    rebuilt_at = CASE WHEN $14 THEN now() ELSE s.rebuilt_at END, updated_at = now()
"""

READ_CELLS: Final = """
SELECT variant_number, context, holdout,
       sum(exposures * w) AS n, sum(reward_sum * w) AS reward_sum,
       sum(reward_sumsq * w) AS reward_sumsq, sum(exposures) AS exposures
FROM (SELECT c.*,
             CASE WHEN $4::float8 IS NULL THEN 1::float8
                  ELSE power(0.5::float8,
                             extract(epoch FROM $3 - (c.bucket + interval '30 minutes'))
                             / $4::float8) END AS w
      FROM observation_cells AS c
      WHERE c.optimization_id = $1 AND c.bucket >= $2) AS weighted
GROUP BY variant_number, context, holdout
ORDER BY holdout, variant_number
"""
"""Cells summed over buckets from $2 on; with a half-life $4 (seconds), each bucket weighted by
0.5^(age at $3 of its middle / half-life). ``exposures`` stays the unweighted count."""

READ_OUTCOMES: Final = """
SELECT c.variant_number, o.position::integer AS position, sum(o.n)::bigint AS n
FROM observation_cells AS c
CROSS JOIN LATERAL unnest(c.outcome_counts) WITH ORDINALITY AS o(n, position)
WHERE c.optimization_id = $1 AND c.bucket >= $2
GROUP BY 1, 2 ORDER BY 1, 2
"""
"""A weighted metric's exposures per variant (holdout included, as in ``exposures``) and
declared outcome (1-based position), over buckets from $2 on: the outcome mix of results.
Not decayed: counts of what happened."""

READ_DAYS: Final = """
SELECT (bucket AT TIME ZONE 'UTC')::date AS day, variant_number, holdout,
       sum(exposures) AS n, sum(reward_sum) AS reward_sum, sum(reward_sumsq) AS reward_sumsq
FROM observation_cells WHERE optimization_id = $1
GROUP BY 1, 2, 3 ORDER BY 1, 3, 2
"""


@dataclass(frozen=True)
class CellState:
    """The watermark of an optimization's cells (a row of ``observation_state``)."""

    fingerprint: str
    as_of: datetime
    frontier: datetime
    marker: datetime | None
    seen_below: int | None
    """The xmin of the pass's snapshot (migration 0015): events of older transactions it saw."""
    passes: int
    rebuilt_at: datetime
    updated_at: datetime
    pending: list[dict[str, Any]]
    optimized: Arm
    holdout: Arm


async def load_state(conn: Connection, optimization_id: UUID) -> CellState | None:
    row = await conn.fetchrow(SELECT_STATE, optimization_id)
    if row is None:
        return None
    return CellState(
        fingerprint=row["fingerprint"],
        as_of=row["as_of"],
        frontier=row["frontier"],
        marker=row["marker"],
        seen_below=row["seen_below"],
        passes=row["passes"],
        rebuilt_at=row["rebuilt_at"],
        updated_at=row["updated_at"],
        pending=row["pending"],
        optimized=Arm(row["optimized_users"], row["optimized_sum"], row["optimized_sumsq"]),
        holdout=Arm(row["holdout_users"], row["holdout_sum"], row["holdout_sumsq"]),
    )


async def lock(conn: Connection, optimization_id: UUID, *, wait: bool) -> bool:
    """Take the optimization's pass lock; without ``wait``, False when another pass holds it."""
    if wait:
        await conn.execute(LOCK, str(optimization_id))
        return True
    return bool(await conn.fetchval(TRY_LOCK, str(optimization_id)))


async def unlock(conn: Connection, optimization_id: UUID) -> None:
    await conn.execute(UNLOCK, str(optimization_id))


@dataclass(frozen=True)
class Staging:
    """Where a pass's chunks go: the staging tables, or for a rebuild ``observation_users``."""

    conn: Connection
    optimization_id: UUID
    rebuild: bool
    timeout_s: float

    async def add(self, rows: ChunkRows) -> None:
        """One chunk's rows (:class:`levered.db.cell_passes.ChunkRows`; users sorted by
        ``observation_users``' key, as :func:`levered.db.cell_passes.chunk` returns them)."""
        cells, users = rows.cells, rows.users
        if cells:
            await self.conn.copy_records_to_table(
                "pass_cells", columns=list(CELL_COLUMNS), records=cells, timeout=self.timeout_s
            )
        if rows.dimensions:
            await self.conn.copy_records_to_table(
                "pass_dimensions",
                columns=list(DIMENSION_COLUMNS),
                records=rows.dimensions,
                timeout=self.timeout_s,
            )
        if not users:
            return
        if self.rebuild:
            opt = self.optimization_id
            await self.conn.copy_records_to_table(
                "observation_users",
                columns=["optimization_id", *USER_COLUMNS],
                records=[(opt, *u) for u in users],
                timeout=self.timeout_s,
            )
        else:
            await self.conn.copy_records_to_table(
                "pass_users", columns=list(USER_COLUMNS), records=users, timeout=self.timeout_s
            )


async def stage(
    conn: Connection, optimization_id: UUID, *, rebuild: bool, timeout_s: float
) -> Staging:
    """Create the staging tables of a pass (``conn`` is in the pass's transaction); a rebuild
    deletes the optimization's stored rows first (module doc)."""
    work_mem = REBUILD_WORK_MEM if rebuild else PASS_WORK_MEM
    await conn.execute(f"SET LOCAL work_mem = '{work_mem}'", timeout=timeout_s)
    await conn.execute(STAGE, timeout=timeout_s)
    if rebuild:
        for table in STORED_TABLES:
            await conn.execute(DELETE_ALL.format(table=table), optimization_id, timeout=timeout_s)
    return Staging(conn, optimization_id, rebuild, timeout_s)


@dataclass(frozen=True)
class PassWrite:
    """What a pass stores besides its staged rows: the replaced ranges and the watermark."""

    organization_id: UUID
    optimization_id: UUID
    fingerprint: str
    bool_metric: bool
    rebuild: bool
    ranges: Sequence[tuple[datetime, datetime]]
    as_of: datetime
    frontier: datetime
    marker: datetime | None
    seen_below: int
    pending: list[dict[str, Any]]
    previous: CellState | None


async def finish_pass(conn: Connection, w: PassWrite, timeout_s: float) -> None:
    """Replace the pass's buckets by the staged rows and move the watermark (module doc);
    ``conn`` is in the transaction :func:`stage` ran in (with ``rebuild=w.rebuild``), which the
    caller commits."""
    opt = w.optimization_id
    lo = [r[0] for r in w.ranges]
    hi = [r[1] for r in w.ranges]
    if w.rebuild or w.previous is None:
        arms = await _user_totals(conn, ALL_TOTALS, opt, w.bool_metric, timeout_s)
    else:
        await conn.execute(PASS_DELTA, opt, lo, hi, timeout=timeout_s)
        await conn.execute("ANALYZE pass_delta", timeout=timeout_s)
        moved = await _user_totals(conn, APPLY_DELTA, opt, w.bool_metric, timeout_s)
        await conn.execute(DROP_EMPTY, opt, timeout=timeout_s)
        for table in ("observation_cells", "observation_dimension_cells", "observation_users"):
            await conn.execute(DELETE_CELLS_IN.format(table=table), opt, lo, hi, timeout=timeout_s)
        await conn.execute(INSERT_USERS, opt, timeout=timeout_s)
        arms = {
            held: _moved(arm, moved[held])
            for held, arm in ((False, w.previous.optimized), (True, w.previous.holdout))
        }
    await conn.execute(INSERT_CELLS, opt, timeout=timeout_s)
    await conn.execute(INSERT_DIMENSIONS, opt, timeout=timeout_s)
    o, h = arms[False], arms[True]
    await conn.execute(
        UPSERT_STATE,
        opt,
        w.organization_id,
        w.fingerprint,
        w.as_of,
        w.frontier,
        w.marker,
        o.users,
        o.outcome_sum,
        o.outcome_sumsq,
        h.users,
        h.outcome_sum,
        h.outcome_sumsq,
        w.pending,
        w.rebuild or w.previous is None,
        w.seen_below,
        timeout=timeout_s,
    )


def _moved(arm: Arm, change: Arm) -> Arm:
    """An arm's totals moved by the ``change`` of its users' outcomes."""
    return Arm(
        arm.users + change.users,
        arm.outcome_sum + change.outcome_sum,
        arm.outcome_sumsq + change.outcome_sumsq,
    )


async def _user_totals(
    conn: Connection,
    sql: str,
    optimization_id: UUID,
    bool_metric: bool,
    timeout_s: float,
) -> dict[bool, Arm]:
    totals = {False: Arm(0, 0.0, 0.0), True: Arm(0, 0.0, 0.0)}
    for row in await conn.fetch(sql, optimization_id, bool_metric, timeout=timeout_s):
        totals[row["holdout"]] = Arm(
            int(row["users"]), float(row["outcome_sum"]), float(row["outcome_sumsq"])
        )
    return totals


async def read_cells(
    conn: Connection,
    optimization_id: UUID,
    *,
    start: datetime,
    as_of: datetime,
    half_life_s: float | None,
) -> list[Any]:
    """Cells per (variant, context, holdout), summed over buckets from ``start`` (decayed)."""
    return await conn.fetch(READ_CELLS, optimization_id, start, as_of, half_life_s)


async def read_outcomes(
    conn: Connection, optimization_id: UUID, *, start: datetime
) -> dict[int, list[int]]:
    """:data:`READ_OUTCOMES` as ``{variant_number: [exposures per declared outcome]}`` (empty
    without weighted cells)."""
    out: dict[int, list[int]] = {}
    for row in await conn.fetch(READ_OUTCOMES, optimization_id, start):
        counts = out.setdefault(row["variant_number"], [])
        counts.extend([0] * (row["position"] - len(counts)))
        counts[row["position"] - 1] = int(row["n"])
    return out


async def read_days(conn: Connection, optimization_id: UUID) -> list[Any]:
    """Matured exposures and reward per UTC day of exposure × variant × holdout."""
    return await conn.fetch(READ_DAYS, optimization_id)
