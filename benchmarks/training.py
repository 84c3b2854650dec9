"""Incremental observation cells: what one pass costs as the history grows.

    python -m benchmarks.training [--sizes 1e6,1e7,1e8]

For each history size N, in one embedded PostgreSQL (non-durable: fsync off only speeds up
seeding), on freshly migrated schemas: an organization, a bool metric over the managed
``rewards`` table (``name = 'purchase'``, with ``@start_date``), a live ``cmab`` optimization
over a 4×3 design with one context factor (``device``, 3 values), a 24 h window, 10 % holdout.

Traffic runs at a constant :data:`RATE` (10⁶ exposures a day), so a larger history is a longer
one (10⁸: 100 days) and the data near the maturity frontier look the same at every size, as in
production, where history grows by time passing. ``T`` is the current hour, ``A = T − 3 d − 1 h``:

1. history: N exposures on ``[A − N/RATE, A)``, time-ordered (appended in received order,
   ``received_at`` = event time, as ingestion does); N/2 users drawn uniformly (users return);
   variant, device, and a ``purchase`` with the planted rate of its (variant, device) (≈ 5 %)
   at a uniform lag inside the window; a ``pageview`` (skipped by the metric) at every 10th
   exposure. Every draw is a hash of the row index. Indexes dropped during the load and built
   again after it, then ``VACUUM ANALYZE``;
2. **rebuild**: ``cells.extend(..., rebuild=True)`` as of ``A + 1 d`` (all history matured);
3. new data: :data:`NEW` exposures on the next day (so not late) with their rewards — the day
   ``[A, A + 1 d)`` has no traffic, so what matures next is exactly the new data — and
   :data:`LATE` late purchases timed up to 6 h before the rebuild's as-of time, by users of
   history exposures inside their window, received now (offline clients);
4. **incremental**: one ``cells.extend`` as of ``T``: the new day, and the late purchases'
   buckets (≤ 7 h of history before the old frontier);
5. **train**: one ``training.train`` (extends the cells to now, reads them, fits, publishes);
6. **steady**: another :data:`NEW` exposures on the day after the new one's frontier, with their
   rewards, and one more ``cells.extend`` over them: the pass the scheduler runs every minute
   on a server whose per-user tables are already in use (the *incremental* pass is the first
   one after a rebuild, on caches the rebuild's 10⁸-row sorts have flushed).

Each timed phase records peaks sampled every 0.2 s — the Python process's RSS, the largest
private (anonymous) RSS of a PostgreSQL backend, the bytes in ``pgsql_tmp`` — and the
database's ``pg_stat_database.temp_bytes`` delta (temporary-file bytes written). Ratios: the
incremental passes and the rebuild's seconds per exposure against the baseline size's (10⁷ when
measured; goals at 10⁸: ≤ 1.3 both). Figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.peaks import Phase, measured
from levered.bandit.sampler import warm_up
from levered.db import attribution, migrations
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import reachable_tempdir
from levered.db.pool import connect
from levered.db.warehouse import ensure_tenant_role
from levered.services import cells, training
from levered.services.warehouse import Warehouse

HEADLINES, COLORS = ("a", "b", "c", "d"), ("red", "green", "blue")
DEVICES = ("mobile", "desktop", "tablet")
DESIGN = [
    {"name": "headline", "dtype": "str", "levels": list(HEADLINES)},
    {"name": "color", "dtype": "str", "levels": list(COLORS)},
]
METRIC_SQL = (
    "SELECT anonymous_id, timestamp, value FROM rewards "
    "WHERE name = 'purchase' AND timestamp >= @start_date"
)
RATE = 1_000_000
"""Exposures per day (history and new data alike)."""
NEW = 1_000_000
"""New exposures before the incremental pass (one day at :data:`RATE`)."""
LATE = 1_000
"""Late purchases before the incremental pass."""
LATE_HOURS = 6
CHUNK = 1_000_000
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
WINDOW_H = 24
LOADERS = 2
"""Connections inserting chunks at once (one per core of the machine measured on)."""
TIMEOUT_S = 3600.0
"""Per-statement limit of the timed passes (the product's default is 300 s)."""
VARIANT_JSON = [{"headline": h, "color": c} for h in HEADLINES for c in COLORS]
DEVICE_JSON = [{"device": d} for d in DEVICES]


def _uniform(index: str, stream: int) -> str:
    """SQL for a uniform draw in [0, 1): the 53 low bits of a seeded hash of the row index,
    so every row is the same whatever the chunking and the number of loaders."""
    return f"((hashint8extended({index}, {stream}) & 9007199254740991)::float8 / 2^53)"


EXPOSURE = f"""
    SELECT i, uid, uid % 10 = 0 AS holdout,
           CASE WHEN uid % 10 = 0 THEN 0 ELSE drawn END AS variant, device,
           $4::timestamptz + make_interval(secs => ((i - $6::bigint) + u) * $5::float8) AS ts,
           conversion, make_interval(secs => floor(lag * {WINDOW_H * 3600})) AS lag
    FROM (SELECT i, floor({_uniform("i", 1)} * $3::bigint)::bigint AS uid,
                 floor({_uniform("i", 2)} * {len(VARIANT_JSON)})::int AS drawn,
                 floor({_uniform("i", 3)} * {len(DEVICES)})::int AS device,
                 {_uniform("i", 4)} AS u, {_uniform("i", 5)} AS conversion,
                 {_uniform("i", 6)} AS lag
          FROM generate_series($1::bigint, $2::bigint - 1) AS g(i)) AS d"""
"""Exposures ``$1 ≤ i < $2`` of $3 users, the ``i``-th at ``$4 + (i − $6 + u) · $5`` seconds
(time-ordered, ``u`` uniform). Users whose number is divisible by 10 are the holdout and see
variant 0 (number 1)."""

INSERT_EXPOSURES = f"""
INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, variant,
                                 variant_number, context, "timestamp", received_at, holdout)
SELECT $7::uuid, $8::uuid, 'u' || x.uid, ($9::jsonb[])[x.variant + 1], x.variant + 1,
       ($10::jsonb[])[x.device + 1], x.ts, x.ts, x.holdout
FROM ({EXPOSURE}) AS x"""

INSERT_REWARDS = f"""
INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "timestamp",
                               received_at)
SELECT $7::uuid, 'u' || x.uid, 'purchase', 1, x.ts + x.lag, x.ts + x.lag
FROM ({EXPOSURE}) AS x
WHERE x.conversion < ($8::float8[])[x.variant * {len(DEVICES)} + x.device + 1]
UNION ALL
SELECT $7::uuid, 'u' || x.uid, 'pageview', 1, x.ts, x.ts
FROM ({EXPOSURE}) AS x WHERE x.i % 10 = 0"""
"""Rewards of exposures ``$1 ≤ i < $2``: a purchase below the planted rate ($8) at a lag inside
the window; a pageview at every 10th exposure's user and time."""

INSERT_LATE = f"""
INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "timestamp")
SELECT $5::uuid, 'u' || floor({_uniform("e", 1)} * $3::bigint)::bigint, 'purchase', 1, t
FROM (SELECT $4::timestamptz - make_interval(secs => back) AS t,
             $2::bigint - 1 - floor({_uniform("j", 12)} * back / $6::float8)::bigint AS e
      FROM (SELECT j, {_uniform("j", 11)} * {LATE_HOURS * 3600} AS back
            FROM generate_series(0, $1::bigint - 1) AS g(j)) AS b) AS late"""
"""$1 late purchases at ``t = $4 − back`` (``back`` < 6 h), each by the user of a history
exposure ``e`` drawn among the last ``back`` seconds' (of $2, at $6 seconds apart), so inside
its window; ``received_at`` is now."""

SELECT_INDEXES = """
SELECT format('%I.%I', schemaname, indexname) AS name, indexdef
FROM pg_indexes WHERE schemaname = 'warehouse' AND tablename IN ('exposures', 'rewards')
"""


async def setup(conn: Any) -> tuple[uuid.UUID, uuid.UUID]:
    org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('bench') RETURNING id")
    metric = await conn.fetchval(
        "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
        "value_col, reward_type) VALUES ($1, 'Purchases', $2, 'anonymous_id', 'timestamp', "
        "'value', 'bool') RETURNING id",
        org,
        METRIC_SQL,
    )
    opt = await conn.fetchval(
        "INSERT INTO optimizations (organization_id, name, status, model_type, design_factors, "
        "context_factors, reward_metric_id, attribution, holdout_percentage) "
        "VALUES ($1, 'bench', 'live', 'cmab', $2, $3, $4, $5, 10) RETURNING id",
        org,
        DESIGN,
        [{"name": "device", "dtype": "str"}],
        metric,
        {"type": "last_touch", "conversion_window_hours": WINDOW_H},
    )
    await conn.execute(
        "INSERT INTO models (organization_id, optimization_id) VALUES ($1, $2)", org, opt
    )
    return org, opt


def _rates() -> npt.NDArray[np.float64]:
    """True conversion rate per (variant, device): ≈ 5 % with planted effects."""
    logit = np.log(0.05 / 0.95)
    head = np.array([0.0, 0.15, -0.1, 0.25])
    color = np.array([0.0, 0.1, -0.15])
    device = np.array([0.0, -0.2, 0.1])
    eta = logit + head[:, None, None] + color[None, :, None] + device[None, None, :]
    rates: npt.NDArray[np.float64] = (1.0 / (1.0 + np.exp(-eta))).reshape(12, 3)
    return rates


async def load(
    url: str, ids: tuple[uuid.UUID, uuid.UUID], lo: int, hi: int, users: int, first: datetime
) -> None:
    """Exposures ``lo ≤ i < hi`` (from ``first``, :data:`RATE` a day) and their rewards, in
    chunks on :data:`LOADERS` connections (``INSERT … SELECT``: nothing crosses the wire)."""
    org, opt = ids
    step = 86_400 / RATE
    rates = _rates().ravel().tolist()
    chunks = [(s, min(hi, s + CHUNK)) for s in range(lo, hi, CHUNK)]

    async def loader() -> None:
        conn = await connect(url)
        try:
            while chunks:
                span = (*chunks.pop(0), users, first, step, lo)
                await conn.execute(INSERT_EXPOSURES, *span, org, opt, VARIANT_JSON, DEVICE_JSON)
                await conn.execute(INSERT_REWARDS, *span, org, rates)
        finally:
            await conn.close()

    await asyncio.gather(*(loader() for _ in range(LOADERS)))


async def seed_history(
    url: str, ids: tuple[uuid.UUID, uuid.UUID], size: int, end: datetime
) -> None:
    """The history, with the warehouse indexes dropped during the load and built again after
    it (the same definitions): sorting once is far cheaper than 10⁸ random insertions."""
    admin = await connect(url)
    try:
        indexes = await admin.fetch(SELECT_INDEXES)
        await admin.execute("; ".join(f"DROP INDEX {row['name']}" for row in indexes))
        await load(url, ids, 0, size, size // 2, end - timedelta(days=size / RATE))
        await admin.execute("SET maintenance_work_mem = '1GB'")
        for row in indexes:
            await admin.execute(row["indexdef"])
        await admin.execute("VACUUM ANALYZE warehouse.exposures, warehouse.rewards")
    finally:
        await admin.close()


@dataclass
class Result:
    size: int
    seed_s: float
    rebuild: Phase
    incremental: Phase
    train: Phase
    steady: Phase


async def run_size(url: str, pgdata: Path, size: int, lift_temp_limit: bool) -> Result:
    conn = await connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS warehouse CASCADE")
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await migrations.migrate(conn)
        org, opt = await setup(conn)
        found = await attribution.find_target(conn, org, opt)
        if lift_temp_limit:  # a role-in-database setting overrides the role's own
            role = await ensure_tenant_role(conn, org)
            await conn.execute(
                f"ALTER ROLE {role.name} IN DATABASE levered SET temp_file_limit = -1"
            )
    finally:
        await conn.close()
    assert found is not None
    spec, metric = found
    assert metric is not None
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    end = hour - timedelta(days=3, hours=1)  # A: the history's end
    as_of0 = end + timedelta(hours=WINDOW_H)
    started = time.perf_counter()
    await seed_history(url, (org, opt), size, end)
    seed_s = time.perf_counter() - started

    async def extend(pool: Any, as_of: datetime, rebuild: bool) -> cells.Pass:
        done = await cells.extend(
            Warehouse(pool), org, spec, metric, as_of=as_of, rebuild=rebuild, timeout_s=TIMEOUT_S
        )
        assert done is not None
        return done

    rebuild, done = await measured(url, pgdata, lambda pool: extend(pool, as_of0, True))
    assert done.rebuilt
    rebuild.extra = {"chunks": done.chunks}
    conn = await connect(url)
    try:  # the new day (after the rebuild's as-of, so not late) and the late trickle
        await load(url, (org, opt), size, size + NEW, size // 2, as_of0 + timedelta(minutes=1))
        await conn.execute(INSERT_LATE, LATE, size, size // 2, as_of0, org, 86_400 / RATE)
        await conn.execute("VACUUM ANALYZE warehouse.exposures, warehouse.rewards")
    finally:
        await conn.close()
    incremental, done = await measured(url, pgdata, lambda pool: extend(pool, hour, False))
    assert not done.rebuilt
    incremental.extra = {"chunks": done.chunks, "ranges": done.ranges, "exposures": done.exposures}

    async def train(pool: Any) -> Any:
        return await training.train(Warehouse(pool), org, opt, seed=1)

    trained, version = await measured(url, pgdata, train)
    trained.extra = {"cells": version.counts["cells"], **version.counts["seconds"]}
    await load(url, (org, opt), size + NEW, size + 2 * NEW, size // 2, hour - DAY + MINUTE)
    steady, done = await measured(url, pgdata, lambda pool: extend(pool, hour + DAY + HOUR, False))
    assert not done.rebuilt
    steady.extra = {"exposures": done.exposures}
    conn = await connect(url)
    try:  # free the disk for the next size
        await conn.execute("DROP SCHEMA warehouse CASCADE; DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")
    finally:
        await conn.close()
    return Result(size, seed_s, rebuild, incremental, trained, steady)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def report(results: list[Result]) -> None:
    base = next((r for r in results if r.size == 10**7), results[0])
    print(f"\n{os.cpu_count()} CPUs; baseline {base.size:,}; peaks in MB (Python RSS / largest")
    print("backend private RSS / pgsql_tmp), temp = pg_stat_database.temp_bytes written")
    header = (
        f"{'history':>11} {'seed s':>6} | {'rebuild s':>9} {'µs/exp':>6} {'ratio':>5} "
        f"{'peaks':>15} {'temp':>6} | {'incr s':>6} {'re-attr':>9} {'ranges':>6} {'ratio':>5} "
        f"{'peaks':>13} {'temp':>5} | {'train s':>7} {'SQL s':>6} {'fit s':>5} | "
        f"{'steady s':>8} {'ratio':>5}"
    )
    print(header)
    print("-" * len(header))

    def per(r: Result) -> float:
        return r.rebuild.seconds / r.size * 1e6

    def peaks(p: Phase) -> str:
        return f"{_mb(p.python_rss)}/{_mb(p.backend_rss)}/{_mb(p.tmp_dir)}"

    for r in results:
        i, t = r.incremental, r.train
        print(
            f"{r.size:>11,} {r.seed_s:>6.0f} | {r.rebuild.seconds:>9.1f} {per(r):>6.2f} "
            f"{per(r) / per(base):>5.2f} {peaks(r.rebuild):>15} {_mb(r.rebuild.temp_written):>6} | "
            f"{i.seconds:>6.1f} {i.extra['exposures']:>9,} {i.extra['ranges']:>6} "
            f"{i.seconds / base.incremental.seconds:>5.2f} {peaks(i):>13} "
            f"{_mb(i.temp_written):>5} | {t.seconds:>7.2f} {t.extra['attribution']:>6.2f} "
            f"{t.extra['fit']:>5.2f} | {r.steady.seconds:>8.1f} "
            f"{r.steady.seconds / base.steady.seconds:>5.2f}"
        )
    top = results[-1]
    if top is not base:
        print(
            f"\nat {top.size:,} vs {base.size:,}: incremental pass "
            f"{top.incremental.seconds / base.incremental.seconds:.2f}× (goal ≤ 1.3), "
            f"rebuild per exposure {per(top) / per(base):.2f}× (goal ≤ 1.3), steady pass "
            f"{top.steady.seconds / base.steady.seconds:.2f}×"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Python peak RSS over the whole run (getrusage): {peak:,.0f} MB")


async def _log_slow(url: str) -> None:
    """Log statements of 1 s or more (where a phase's time goes, for ``--log``)."""
    conn = await connect(url)
    try:
        await conn.execute("ALTER SYSTEM SET log_min_duration_statement = '1s'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1e6,1e7,1e8", help="history sizes (exposures)")
    parser.add_argument("--log", type=Path, help="keep PostgreSQL's log (statements ≥ 1 s) here")
    parser.add_argument(
        "--lift-temp-limit",
        action="store_true",
        help="lift the tenant's 1 GB temp_file_limit (to measure past it; README, Training)",
    )
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    warm_up()
    root = reachable_tempdir("levered-bench-training-")
    results: list[Result] = []
    try:
        with EmbeddedPostgres(root / "data", durable=False) as database:
            asyncio.run(_log_slow(database.url))
            for size in sizes:
                load_avg = os.getloadavg()[0]
                r = asyncio.run(run_size(database.url, database.pgdata, size, args.lift_temp_limit))
                results.append(r)
                print(
                    f"{size:>11,}: seeded in {r.seed_s:.0f} s, rebuild {r.rebuild.seconds:.1f} s "
                    f"({r.rebuild.extra['chunks']} chunks), incremental "
                    f"{r.incremental.seconds:.2f} s, train {r.train.seconds:.2f} s, steady "
                    f"{r.steady.seconds:.2f} s; load avg "
                    f"{load_avg:.1f} → {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    finally:
        if args.log:
            shutil.copy(root / "data" / "postgres.log", args.log)
        shutil.rmtree(root, ignore_errors=True)
    report(results)


if __name__ == "__main__":
    main()
