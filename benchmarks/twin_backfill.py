"""A backfill into an optimization that has served exposures, on a table not yet analyzed.

    python -m benchmarks.twin_backfill [--batches 60] [--batch 500]

Such an optimization's ingested exposures go through the twin check (one index probe per row
for a served exposure of the same user within 60 s, ``levered.db.warehouse``). On a new
installation the exposures table has no statistics until autovacuum's first ANALYZE, and with
none the planner probed by ``exposures_time_idx`` (optimization, time): for a backfill whose
events share a timestamp that reads every stored exposure of the optimization per row, so each
batch was slower than the last. The statement now keeps the time range out of the index
conditions (``+ interval '0'``). This runs both statements side by side — the current one, and
the same text without the fence — on a durable embedded PostgreSQL with autovacuum off for the
table (the state before its first analyze), each writing ``batches`` batches of ``batch`` rows
with one timestamp into its own optimization, alternating batch by batch so both see the same
table. Prints each statement's first and last batch times, the total, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from benchmarks.ingest import setup
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import scratch_dir
from levered.db.pool import connect
from levered.db.warehouse import INSERT_EXPOSURES_WITHOUT_SERVED_TWINS, TWIN_WINDOW

FENCE = "+ interval '0' "
UNFENCED = INSERT_EXPOSURES_WITHOUT_SERVED_TWINS.replace(FENCE, "")
AT = datetime(2026, 12, 7, 10, tzinfo=UTC)


async def run(url: str, batches: int, size: int) -> dict[str, list[float]]:
    org, first, _ = await setup(url)
    conn = await connect(url)
    try:
        second = await conn.fetchval(
            "INSERT INTO optimizations (organization_id, name, status, model_type, "
            "design_factors, attribution, holdout_percentage) SELECT organization_id, "
            "'bench 2', status, model_type, design_factors, attribution, holdout_percentage "
            "FROM optimizations WHERE id = $1 RETURNING id",
            first,
        )
        await conn.execute("ALTER TABLE warehouse.exposures SET (autovacuum_enabled = false)")
        statements = {"fenced (now)": (INSERT_EXPOSURES_WITHOUT_SERVED_TWINS, first)}
        statements["unfenced (before)"] = (UNFENCED, second)
        times: dict[str, list[float]] = {name: [] for name in statements}
        for b in range(batches):
            for name, (sql, optimization) in statements.items():
                began = time.perf_counter()
                await conn.execute(sql, *_batch(org, optimization, b, size), TWIN_WINDOW)
                times[name].append(time.perf_counter() - began)
        return times
    finally:
        await conn.close()


def _batch(org: UUID, optimization: UUID, b: int, size: int) -> list[list[Any]]:
    return [
        [org] * size,
        [optimization] * size,
        [f"user-{b}-{i}" for i in range(size)],
        [{"headline": "a", "cta": True}] * size,
        [2] * size,
        [{}] * size,
        [AT] * size,
        [str(uuid4()) for _ in range(size)],
        [True] * size,  # every row probed: the optimization has served exposures
    ]


def main() -> None:
    if UNFENCED == INSERT_EXPOSURES_WITHOUT_SERVED_TWINS:
        raise SystemExit(f"the statement has no {FENCE.strip()!r} fence to compare against")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with scratch_dir("levered-bench-twins-") as root, EmbeddedPostgres(root / "data") as database:
        times = asyncio.run(run(database.url, args.batches, args.batch))
    rows = args.batches * args.batch
    print(f"{args.batches} batches of {args.batch} rows per statement, one timestamp, no ANALYZE")
    print(f"{'statement':18} {'first 5 ms':>11} {'last 5 ms':>10} {'total s':>8}")
    for name, series in times.items():
        first = statistics.median(series[:5]) * 1000
        last = statistics.median(series[-5:]) * 1000
        print(f"{name:18} {first:11.1f} {last:10.1f} {sum(series):8.2f}")
    fenced, unfenced = (sum(series) for series in times.values())
    print(f"unfenced / fenced total time, {rows:,} rows each: {unfenced / fenced:.1f}")


if __name__ == "__main__":
    main()
