"""Training wall time in the real database, split into SQL attribution and fitting.

    python -m benchmarks.training [--sizes 100000,1000000,10000000]

For each size N, in one embedded PostgreSQL (non-durable: fsync off — it only speeds up
seeding; the timed training run only reads and writes one version row), on freshly migrated
schemas:

1. an organization (its tenant role is made by the migrations' trigger), a bool metric over the
   managed ``rewards`` table (``name = 'purchase'``, with the ``@start_date`` filter) and a live
   ``cmab`` optimization over a 4×3 design with one context factor (``device``, 3 values), a
   24 h conversion window and a 10 % holdout;
2. N exposures generated in the server (``INSERT … SELECT`` from ``generate_series``, see
   :func:`seed`): N/2 users ``u0``… drawn uniformly (so users return; ≈ 86 % of them are seen
   at least once), each exposure at a uniformly random second of the 30 days that end two days
   before the as-of time (all matured), a uniformly random variant — holdout users (10 % of
   users: id divisible by 10) see variant 1 — and a uniformly random device; a ``purchase``
   reward row with the planted probability of its (variant, device) (≈ 5 %, :func:`_rates`) at
   a uniformly random lag inside the 24 h window; plus N ``pageview`` rows (the user and time
   of a uniformly random exposure) that the metric must skip. Every draw is a hash of the row
   index, so the data are the same for every run and chunking. Then ``VACUUM ANALYZE``, as
   autovacuum would eventually do;
3. one real training run, ``levered.services.training.train`` (lock, attribution as the
   organization in the sandbox, fit on a worker thread, summary, version insert). The run
   records its two phases in the version's ``counts.seconds``: SQL (attribution and
   aggregation to cells, in as many passes as :func:`levered.db.attribution.passes_for` says)
   and fit (``fit_cmab`` + the posterior summary).

Prints per size: seed time, attribution passes, the three timings, cells, and seconds per 10⁵
exposures with the ratio to the smallest size (1.0 = linear growth). Measured figures:
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from levered.bandit.sampler import warm_up
from levered.db import attribution, migrations
from levered.db.embedded import EmbeddedPostgres, reachable_tempdir
from levered.db.pool import connect, create_pool
from levered.services import training
from levered.services.warehouse import Warehouse

HEADLINES = ("a", "b", "c", "d")
COLORS = ("red", "green", "blue")
DEVICES = ("mobile", "desktop", "tablet")
DESIGN = [
    {"name": "headline", "dtype": "str", "levels": list(HEADLINES)},
    {"name": "color", "dtype": "str", "levels": list(COLORS)},
]
METRIC_SQL = (
    "SELECT anonymous_id, timestamp, value FROM rewards "
    "WHERE name = 'purchase' AND timestamp >= @start_date"
)
CHUNK = 1_000_000
WINDOW_H = 24
SPAN_DAYS = 30
LOADERS = 2
"""Connections inserting chunks at once (one per core of the machine this was measured on)."""
VARIANT_JSON = [{"headline": h, "color": c} for h in HEADLINES for c in COLORS]
DEVICE_JSON = [{"device": d} for d in DEVICES]


def _uniform(index: str, stream: int) -> str:
    """SQL for a uniform draw in [0, 1): the 53 low bits of a seeded hash of the row index.

    A pure function of (index, stream), so every row is the same whatever the chunking and
    however many connections load in parallel, and a row can be recomputed from its index.
    """
    return f"((hashint8extended({index}, {stream}) & 9007199254740991)::float8 / 2^53)"


def _draws(source: str) -> str:
    """The random draws of exposure ``i`` for every ``i`` of ``source``: user, variant, device,
    time, conversion draw and reward lag. $3 users, $4 the first instant."""
    return f"""
        SELECT i,
               floor({_uniform("i", 1)} * $3::bigint)::bigint AS uid,
               floor({_uniform("i", 2)} * {len(VARIANT_JSON)})::int AS drawn_variant,
               floor({_uniform("i", 3)} * {len(DEVICES)})::int AS device,
               $4::timestamptz
                 + make_interval(secs => floor({_uniform("i", 4)} * {SPAN_DAYS * 86_400}))
                 AS ts,
               {_uniform("i", 5)} AS conversion_draw,
               make_interval(secs => floor({_uniform("i", 6)} * {WINDOW_H * 3600})) AS lag
        FROM {source}"""


EXPOSURE = f"""
    SELECT d.uid, d.uid % 10 = 0 AS holdout,
           CASE WHEN d.uid % 10 = 0 THEN 0 ELSE d.drawn_variant END AS variant, d.device, d.ts,
           d.conversion_draw, d.lag
    FROM ({_draws("generate_series($1::bigint, $2::bigint - 1) AS g(i)")}) AS d"""
"""Exposures ``$1 ≤ i < $2``. Users whose number is divisible by 10 are the holdout and see
variant 0 (number 1)."""

INSERT_EXPOSURES = f"""
INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, variant,
                                 variant_number, context, "timestamp", holdout)
SELECT $5::uuid, $6::uuid, 'u' || x.uid, ($7::jsonb[])[x.variant + 1], x.variant + 1,
       ($8::jsonb[])[x.device + 1], x.ts, x.holdout
FROM ({EXPOSURE}) AS x"""
"""$5 organization, $6 optimization, $7 variant JSON per variant, $8 context JSON per device."""

PICKED = f"""(SELECT floor({_uniform("j", 7)} * $6::bigint)::bigint AS i
       FROM generate_series($1::bigint, $2::bigint - 1) AS p(j)) AS picked"""
"""For each pageview ``$1 ≤ j < $2``, the exposure it copies: one of all $6, at random."""

INSERT_REWARDS = f"""
INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "timestamp")
SELECT $5::uuid, 'u' || x.uid, 'purchase', 1, x.ts + x.lag
FROM ({EXPOSURE}) AS x
WHERE x.conversion_draw < ($7::float8[])[x.variant * {len(DEVICES)} + x.device + 1]
UNION ALL
SELECT $5::uuid, 'u' || x.uid, 'pageview', 1, x.ts
FROM ({_draws(PICKED)}) AS x"""
"""Rewards of exposures ``$1 ≤ i < $2``: a purchase when the conversion draw is below the
planted rate ($7, per variant and device) at a lag inside the window, and one pageview per
index ``j`` for the exposure it picks at random among all $6 (its user, its time)."""

SELECT_INDEXES = """
SELECT format('%I.%I', schemaname, indexname) AS name, indexdef
FROM pg_indexes WHERE schemaname = 'warehouse' AND tablename IN ('exposures', 'rewards')
"""


@dataclass
class Timing:
    size: int
    seed_s: float
    attribution_s: float
    fit_s: float
    train_s: float
    cells: int
    matured: int
    rewards: int
    passes: int


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


async def seed(url: str, org: uuid.UUID, opt: uuid.UUID, size: int, as_of: datetime) -> int:
    """Generate ``size`` exposures and their rewards in the server; returns the purchases.

    The rows are computed by ``INSERT … SELECT`` from ``generate_series`` (nothing crosses the
    wire), in chunks on :data:`LOADERS` connections at once, with the two tables' indexes
    dropped during the load and built again afterwards (the same definitions, as the migrations
    made them): building a B-tree once by sorting is far cheaper than 10⁷ random insertions.
    """
    first = as_of - timedelta(days=SPAN_DAYS + 2)
    rates = _rates().ravel().tolist()
    users = max(1, size // 2)
    admin = await connect(url)
    try:
        indexes = await admin.fetch(SELECT_INDEXES)
        await admin.execute("; ".join(f"DROP INDEX {row['name']}" for row in indexes))
        chunks = asyncio.Queue[tuple[int, int]]()
        for start in range(0, size, CHUNK):
            chunks.put_nowait((start, min(size, start + CHUNK)))

        async def load() -> None:
            conn = await connect(url)
            try:
                while not chunks.empty():
                    lo, hi = chunks.get_nowait()
                    span = (lo, hi, users, first)
                    await conn.execute(INSERT_EXPOSURES, *span, org, opt, VARIANT_JSON, DEVICE_JSON)
                    await conn.execute(INSERT_REWARDS, *span, org, size, rates)
            finally:
                await conn.close()

        await asyncio.gather(*(load() for _ in range(LOADERS)))
        await admin.execute("SET maintenance_work_mem = '1GB'")
        for row in indexes:
            await admin.execute(row["indexdef"])
        await admin.execute("VACUUM ANALYZE warehouse.exposures")
        await admin.execute("VACUUM ANALYZE warehouse.rewards")
        purchases = await admin.fetchval(
            "SELECT count(*) FROM warehouse.rewards WHERE name = 'purchase'"
        )
    finally:
        await admin.close()
    return int(purchases)


async def run_size(url: str, size: int) -> Timing:
    conn = await connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS warehouse CASCADE")
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await migrations.migrate(conn)
        org, opt = await setup(conn)
    finally:
        await conn.close()
    as_of = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    rewards = await seed(url, org, opt, size, as_of)
    seed_s = time.perf_counter() - started
    passes = await attribution_passes(url, opt, as_of)
    pool = await create_pool(url, min_size=1, max_size=4)
    try:
        started = time.perf_counter()
        version = await training.train(Warehouse(pool), org, opt, as_of=as_of, seed=1)
        train_s = time.perf_counter() - started
    finally:
        await pool.close()
    phases = version.counts["seconds"]  # measured by the training service itself
    return Timing(
        size,
        seed_s,
        phases["attribution"],
        phases["fit"],
        train_s,
        int(version.counts["cells"]),
        int(version.counts["matured"]),
        rewards,
        passes,
    )


async def attribution_passes(url: str, opt: uuid.UUID, as_of: datetime) -> int:
    """The passes the run's attribution makes (its own count, one organization here)."""
    conn = await connect(url)
    try:
        size = await conn.fetchrow(attribution.COUNT_ATTRIBUTED, opt, attribution.BEGINNING, as_of)
    finally:
        await conn.close()
    assert size is not None
    return attribution.passes_for(size["exposures"], size["width"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="exposure counts")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    warm_up()
    root = reachable_tempdir("levered-bench-training-")
    results: list[Timing] = []
    with EmbeddedPostgres(root / "data", durable=False) as database:
        for size in sizes:
            load = os.getloadavg()[0]
            timing = asyncio.run(run_size(database.url, size))
            results.append(timing)
            print(
                f"{size:>11,} exposures: seeded in {timing.seed_s:.0f} s "
                f"({timing.rewards:,} purchases), load avg {load:.1f} → {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    base = results[0]

    def per(t: Timing) -> float:
        return t.train_s / t.size * 1e5

    print(f"\n{os.cpu_count()} CPUs; training = lock + attribution + fit + summary + publish")
    header = (
        f"{'exposures':>11} {'matured':>11} {'cells':>6} {'passes':>6} | {'SQL attribution s':>17} "
        f"{'fit s':>7} {'train s':>8} | {'train s / 10⁵':>13} {'ratio':>6} "
        f"{'SQL s / 10⁵':>11} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for t in results:
        sql_per = t.attribution_s / t.size * 1e5
        base_sql = base.attribution_s / base.size * 1e5
        print(
            f"{t.size:>11,} {t.matured:>11,} {t.cells:>6} {t.passes:>6} | {t.attribution_s:>17.2f} "
            f"{t.fit_s:>7.3f} {t.train_s:>8.2f} | {per(t):>13.3f} {per(t) / per(base):>6.2f} "
            f"{sql_per:>11.3f} {sql_per / base_sql:>6.2f}"
        )


if __name__ == "__main__":
    main()
