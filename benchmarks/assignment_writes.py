"""Sticky assignment writes: with and without a foreign key, random and time-ordered ids.

    python -m benchmarks.assignment_writes [--rows 20000] [--batch 500] [--rounds 3]

Why ``assignments`` has no foreign key (migration 0008) and why the anonymous ids the server
generates are time-ordered (version-7 UUIDs, ``levered.services.random_ids``): every new user
of a live sticky optimization writes one row; the key's referential check runs once per row,
and a random id lands on a random page of the primary key's B-tree. A durable embedded
PostgreSQL with one live optimization (the serving benchmark's seed); ``rows`` assignments
written with the serving path's COPY (``levered.db.serving.copy_assignments``'s columns) in
batches of ``batch`` into the real table with random ids (uuid4 hex, as a caller's ids might
be), a copy of it that has the key back (random ids), and a copy without the key given
time-ordered ids, alternating round by round (the tables grow round by round). Prints µs per
row (wall: encoding, COPY, commit) and the ratios to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.serving import seed_database
from levered.db import serving as db
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import scratch_dir
from levered.db.pool import connect
from levered.services.random_ids import time_ordered_hex

WITH_KEY = """
CREATE TABLE assignments_with_key (LIKE assignments INCLUDING ALL);
ALTER TABLE assignments_with_key ADD FOREIGN KEY (optimization_id)
    REFERENCES optimizations (id) ON DELETE CASCADE;
CREATE TABLE assignments_ordered (LIKE assignments INCLUDING ALL);
"""


async def run(url: str, rows: int, batch: int, rounds: int) -> dict[str, list[float]]:
    seeded = await seed_database(url, [12], np.random.default_rng(8))
    optimization = seeded[12]
    conn = await connect(url)
    try:
        org = await conn.fetchval(
            "SELECT organization_id FROM optimizations WHERE id = $1", optimization
        )
        await conn.execute(WITH_KEY)
        # (table, id generator): the production table with random and with time-ordered
        # (version-7) ids, and the keyed copy with random ids.
        cases: dict[str, tuple[str, Callable[[], str]]] = {
            "assignments (no key)": ("assignments", lambda: uuid.uuid4().hex),
            "with the foreign key": ("assignments_with_key", lambda: uuid.uuid4().hex),
            "no key, time-ordered ids": ("assignments_ordered", time_ordered_hex),
        }
        timings: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (table, new_id) in cases.items():
                data: list[Any] = [
                    (optimization, new_id(), org, 2, False, uuid.uuid4(), 0.5, 1)
                    for _ in range(rows)
                ]
                began = time.perf_counter()
                for at in range(0, rows, batch):
                    await conn.copy_records_to_table(
                        table, columns=list(db.ASSIGNMENT_COLUMNS), records=data[at : at + batch]
                    )
                timings[name].append((time.perf_counter() - began) / rows * 1e6)
        return timings
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch_dir("levered-bench-assign-") as root, EmbeddedPostgres(root / "data") as database:
        timings = asyncio.run(run(database.url, args.rows, args.batch, args.rounds))
    print(
        f"COPY of {args.rows:,} assignment rows in batches of {args.batch}, {args.rounds} "
        "alternating rounds, durable embedded PostgreSQL"
    )
    print(f"{'table':<26}{'µs/row per round':>30}{'best':>8}")
    for name, values in timings.items():
        rounds = " ".join(f"{v:6.1f}" for v in values)
        print(f"{name:<26}{rounds:>30}{min(values):>8.1f}")
    plain = min(timings["assignments (no key)"])
    print(
        f"with the key / without (best rounds): {min(timings['with the foreign key']) / plain:.2f}"
    )
    ordered = min(timings["no key, time-ordered ids"])
    print(f"time-ordered ids / random ids (best rounds): {ordered / plain:.2f}")


if __name__ == "__main__":
    main()
