"""Training wall time in the real database, split into SQL attribution and fitting.

    python -m benchmarks.training [--sizes 100000,1000000,3000000] [--model cmab]

For each size N, on a fresh embedded PostgreSQL database (non-durable: fsync off — it only
speeds up seeding; the timed training run only reads and writes one version row):

1. an organization (its tenant role is made by the migrations' trigger), a bool metric over the
   managed ``rewards`` table (``name = 'purchase'``, with the ``@start_date`` filter) and a live
   ``cmab`` optimization over a 4×3 design with one context factor (``device``, 3 values), a
   24 h conversion window and a 10 % holdout;
2. N exposures COPYed into ``warehouse.exposures`` (CSV): N/2 users (so users return), each
   exposure at a random time in the 30 days before the as-of time minus two days (all matured),
   a uniformly random variant (holdout users — 10 % of users by id — see variant 1), a device;
   a ``purchase`` reward row with probability ≈ 5 % (planted per-variant and per-device
   effects) at a random time inside the window; plus the same number of ``pageview`` rows the
   metric must skip. Then ``VACUUM ANALYZE``, as autovacuum would eventually do;
3. one real training run, ``levered.services.training.train`` (lock, attribution as the
   organization in the sandbox, fit on a worker thread, summary, version insert), with its two
   phases timed by wrapping ``training.attribute`` (SQL: attribution + aggregation to cells) and
   ``training._fit`` (``fit_cmab`` + the posterior summary) — the run itself is unchanged.

Prints per size: seed time, the three timings, cells, and seconds per 10⁵ exposures with the
ratio to the smallest size (1.0 = linear growth). 10⁷ is reachable with ``--sizes``; on a
2-core machine it takes several minutes to seed (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from levered.bandit.sampler import warm_up
from levered.db import migrations
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
EXPOSURE_COLUMNS = (
    "organization_id",
    "optimization_id",
    "anonymous_id",
    "variant",
    "variant_number",
    "context",
    "timestamp",
    "holdout",
)
REWARD_COLUMNS = ("organization_id", "anonymous_id", "name", "value", "timestamp")
CHUNK = 500_000
WINDOW_H = 24


def _csv_json(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


VARIANT_JSON = [
    _csv_json(f'{{"headline": "{h}", "color": "{c}"}}') for h in HEADLINES for c in COLORS
]
DEVICE_JSON = [_csv_json(f'{{"device": "{d}"}}') for d in DEVICES]


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


def _rates() -> np.ndarray:
    """True conversion rate per (variant, device): ≈ 5 % with planted effects."""
    logit = np.log(0.05 / 0.95)
    head = np.array([0.0, 0.15, -0.1, 0.25])
    color = np.array([0.0, 0.1, -0.15])
    device = np.array([0.0, -0.2, 0.1])
    eta = logit + head[:, None, None] + color[None, :, None] + device[None, None, :]
    return (1.0 / (1.0 + np.exp(-eta))).reshape(12, 3)


def _chunk(
    org: uuid.UUID, opt: uuid.UUID, n: int, users: int, as_of: datetime, seed: int
) -> tuple[bytes, bytes, int]:
    """CSV bytes of n exposures and their reward rows (purchase and noise)."""
    rng = np.random.default_rng(seed)
    uid = rng.integers(users, size=n)
    holdout = uid % 10 == 0
    variant = np.where(holdout, 0, rng.integers(12, size=n))
    device = rng.integers(3, size=n)
    span_s = 30 * 86_400
    first = np.datetime64(as_of.replace(tzinfo=None) - timedelta(days=32), "s")
    offset = rng.integers(span_s, size=n)
    ts = np.datetime_as_string(first + offset, unit="s")
    converted = rng.random(n) < _rates()[variant, device]
    lag = rng.integers(WINDOW_H * 3600, size=n)
    rts = np.datetime_as_string(first + offset + lag, unit="s")
    o, p = str(org), str(opt)
    exposures = "".join(
        f"{o},{p},u{u},{VARIANT_JSON[v]},{v + 1},{DEVICE_JSON[d]},{t}Z,{'t' if h else 'f'}\n"
        for u, v, d, t, h in zip(
            uid.tolist(),
            variant.tolist(),
            device.tolist(),
            ts.tolist(),
            holdout.tolist(),
            strict=True,
        )
    )
    buy = np.flatnonzero(converted)
    noise = rng.integers(n, size=n)
    rewards = "".join(f"{o},u{uid[i]},purchase,1,{rts[i]}Z\n" for i in buy.tolist()) + "".join(
        f"{o},u{uid[i]},pageview,1,{ts[i]}Z\n" for i in noise.tolist()
    )
    return exposures.encode(), rewards.encode(), int(buy.size)


async def seed(conn: Any, org: uuid.UUID, opt: uuid.UUID, size: int, as_of: datetime) -> int:
    users = max(1, size // 2)
    rewards = 0
    for k, start in enumerate(range(0, size, CHUNK)):
        n = min(CHUNK, size - start)
        exp_csv, rew_csv, bought = _chunk(org, opt, n, users, as_of, seed=1000 + k)
        await conn.copy_to_table(
            "exposures",
            schema_name="warehouse",
            source=io.BytesIO(exp_csv),
            columns=EXPOSURE_COLUMNS,
            format="csv",
        )
        await conn.copy_to_table(
            "rewards",
            schema_name="warehouse",
            source=io.BytesIO(rew_csv),
            columns=REWARD_COLUMNS,
            format="csv",
        )
        rewards += bought
    await conn.execute("VACUUM ANALYZE warehouse.exposures")
    await conn.execute("VACUUM ANALYZE warehouse.rewards")
    return rewards


async def run_size(url: str, size: int) -> Timing:
    conn = await connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS warehouse CASCADE")
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await migrations.migrate(conn)
        org, opt = await setup(conn)
        as_of = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        rewards = await seed(conn, org, opt, size, as_of)
        seed_s = time.perf_counter() - started
    finally:
        await conn.close()
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
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000,3000000", help="exposure counts")
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
        f"{'exposures':>11} {'matured':>11} {'cells':>6} | {'SQL attribution s':>17} "
        f"{'fit s':>7} {'train s':>8} | {'train s / 10⁵':>13} {'ratio':>6} "
        f"{'SQL s / 10⁵':>11} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for t in results:
        sql_per = t.attribution_s / t.size * 1e5
        base_sql = base.attribution_s / base.size * 1e5
        print(
            f"{t.size:>11,} {t.matured:>11,} {t.cells:>6} | {t.attribution_s:>17.2f} "
            f"{t.fit_s:>7.3f} {t.train_s:>8.2f} | {per(t):>13.3f} {per(t) / per(base):>6.2f} "
            f"{sql_per:>11.3f} {sql_per / base_sql:>6.2f}"
        )


if __name__ == "__main__":
    main()
