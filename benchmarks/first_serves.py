"""First serves of caller-supplied ids against the POST floor, in alternating rounds.

    python -m benchmarks.first_serves [--rounds 3] [--seconds 6] [--variants 12,1000]

Issue 22's second goal: a serve for a caller id the server has never seen (a durable sticky
claim in the database) at ≥ 0.7× the trivial-POST floor, with p99 ≤ 3× a returning user's.
One durable embedded PostgreSQL, ``levered server start`` (one granian worker, uvloop, the rate
limiter on with a rate too high to refuse anything, exposure logging on) and the trivial
Litestar POST app (:func:`benchmarks.serving.post_floor_app`) run side by side the whole time;
each round loads, by wrk with 64 connections, in turn: the floor, a returning user, new caller
ids, for each variant count. The idle server costs nothing while the other is loaded, so every
ratio compares loads a few seconds apart; ratios are of the rounds' totals (p99: the median of
the rounds'), and each round's own ratio is printed to show the spread.

After the server's clean shutdown the assignment rows of the measured new ids are counted
against the serves wrk saw answered (a claim answers only after it committed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import psutil

from benchmarks.loadgen import Load, run_load
from benchmarks.server import UNLIMITED_SERVES, start_levered
from benchmarks.serving import UNIQUE_ID_LUA, seed_database, start_post_floor, wrk_script
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import free_port, scratch_dir
from levered.db.pool import connect

RETURNING = '{"anonymous_id":"bench-user","context":{"segment":"a"}}'


@dataclass
class Series:
    loads: list[Load] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return sum(load.requests_per_s for load in self.loads)

    @property
    def p99(self) -> float:
        return statistics.median(load.p99_ms for load in self.loads)


async def _claims(url: str, prefix: str) -> int:
    conn = await connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM assignments WHERE anonymous_id LIKE $1", prefix + "%"
            )
        )
    finally:
        await conn.close()


def _round(floor: Series, returning: dict[int, Series], fresh: dict[int, Series]) -> str:
    """The last round's figures and ratios."""
    base = floor.loads[-1].requests_per_s
    return f"floor {base:,.0f} req/s; " + "; ".join(
        f"{n:,}v new id {new.loads[-1].requests_per_s:,.0f} "
        f"({new.loads[-1].requests_per_s / base:.2f}× floor, p99 {new.loads[-1].p99_ms:.1f} ms "
        f"vs returning {returning[n].loads[-1].p99_ms:.1f})"
        for n, new in fresh.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--variants", default="12,1000")
    args = parser.parse_args()
    variants = [int(v) for v in args.variants.split(",")]
    rng = np.random.default_rng(20261207)
    s, c = args.seconds, args.connections
    load_before = os.getloadavg()[0]
    floor = Series()
    returning = {n: Series() for n in variants}
    fresh = {n: Series() for n in variants}
    busy: dict[str, list[float]] = {}
    with scratch_dir("levered-bench-first-") as root, EmbeddedPostgres(root / "data") as database:
        optimizations = asyncio.run(seed_database(database.url, variants, rng))
        port, floor_port = free_port(), free_port()
        server = start_levered(
            database.url,
            port,
            env=UNLIMITED_SERVES,
        )
        floor_app = start_post_floor(floor_port)
        floor_url = f"http://127.0.0.1:{floor_port}/post"
        urls = {
            n: f"http://127.0.0.1:{port}/api/v2/optimizations/{o}/serve"
            for n, o in optimizations.items()
        }

        def measure(series: Series, name: str, run: Callable[[], Load]) -> None:
            psutil.cpu_percent(None)
            series.loads.append(run())
            busy.setdefault(name, []).append(psutil.cpu_percent(None) / 100)

        try:
            run_load(floor_url, seconds=2, connections=c, body=RETURNING)  # warm
            for url in urls.values():
                run_load(url, seconds=2, connections=c, body=RETURNING)  # load the model, warm
                wrk_script(url, 2, c, UNIQUE_ID_LUA.replace("wrk-", "warm-"))
            for r in range(args.rounds):
                post = partial(run_load, seconds=s, connections=c, body=RETURNING)
                measure(floor, "floor", partial(post, floor_url))
                for n, url in urls.items():
                    measure(returning[n], f"returning {n}", partial(post, url))
                    measure(fresh[n], f"new id {n}", partial(wrk_script, url, s, c, UNIQUE_ID_LUA))
                print(f"round {r + 1}: " + _round(floor, returning, fresh), flush=True)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(60)
            floor_app.send_signal(signal.SIGINT)
            floor_app.wait(30)
        rows = asyncio.run(_claims(database.url, "wrk-"))
    answered = sum(round(load.requests_per_s * s) for n in variants for load in fresh[n].loads)
    print(
        f"\nfirst serves: wrk, {c} connections, {args.rounds} rounds × {s:.0f} s per load, "
        f"load avg {load_before:.1f} → {os.getloadavg()[0]:.1f}; machine CPU busy per load: "
        + ", ".join(f"{k} {100 * statistics.mean(v):.0f} %" for k, v in busy.items())
    )
    print(f"{'load':<28}{'req/s (mean)':>14}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, series in [("POST floor", floor)] + [
        (f"{n:,}v {kind}", x[n]) for n in variants for kind, x in
        (("returning user", returning), ("new caller id", fresh))
    ]:  # fmt: skip
        p50 = statistics.median(load.p50_ms for load in series.loads)
        errors = sum(load.errors for load in series.loads)
        print(
            f"{name:<28}{series.rate / args.rounds:>14,.0f}{p50:>9.2f}{series.p99:>9.2f}{errors:>8}"
        )
    for n in variants:
        print(f"{n:,}v new caller id / POST floor: {fresh[n].rate / floor.rate:.2f} (goal ≥ 0.7)")
        print(
            f"{n:,}v new caller id p99 / returning p99: "
            f"{fresh[n].p99 / returning[n].p99:.2f} (goal ≤ 3)"
        )
    print(
        f"claims stored for measured new ids: {rows:,} (wrk answered ≈ {answered:,}, "
        f"rate × seconds; the rest were in flight when wrk stopped)"
    )


if __name__ == "__main__":
    main()
