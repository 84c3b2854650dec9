"""ASGI server and event loop under the real Levered app, side by side.

    python -m benchmarks.asgi_servers [--seconds 8] [--connections 64]

Starts one durable embedded PostgreSQL with a trained, live 12-variant optimization, then for
each configuration — granian on uvloop (the default), granian on asyncio's own loop, uvicorn on
uvloop — runs ``levered server start --asgi NAME --loop LOOP`` with one worker and loads
``GET /health``, a returning user's serve and a new user's serve (no id: a draw, a generated
id, an assignment and an exposure buffered). Prints requests/s, p50/p99 and each one's ratio
to the default configuration on the same load. The load generator shares the machine's 2
cores, so compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import numpy as np

from benchmarks.loadgen import Load, run_load
from benchmarks.server import UNLIMITED_SERVES, start_levered
from benchmarks.serving import seed_database
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import free_port, scratch_dir

CONFIGURATIONS = (("granian", "uvloop"), ("granian", "asyncio"), ("uvicorn", "uvloop"))
RETURNING = '{"anonymous_id":"bench-user","context":{"segment":"a"}}'
NEW = '{"context":{"segment":"a"}}'
LOADS = ("GET /health", "serve, returning user", "serve, new user")


def measure(
    asgi: str, loop: str, url: str, optimization: str, seconds: float, connections: int
) -> dict[str, Load]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = f"{base}/api/v2/optimizations/{optimization}/serve"
    process = start_levered(
        url,
        port,
        asgi=asgi,
        loop=loop,
        env=UNLIMITED_SERVES,
    )
    try:
        run_load(f"{base}/health", seconds=2, connections=connections)  # warm
        run_load(serve, seconds=1, connections=connections, body=RETURNING)  # load + warm
        return {
            "GET /health": run_load(f"{base}/health", seconds=seconds, connections=connections),
            "serve, returning user": run_load(
                serve, seconds=seconds, connections=connections, body=RETURNING
            ),
            "serve, new user": run_load(serve, seconds=seconds, connections=connections, body=NEW),
        }
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with scratch_dir("levered-bench-") as root, EmbeddedPostgres(root / "data") as database:
        seeded = asyncio.run(seed_database(database.url, [12], np.random.default_rng(7)))
        results = {
            f"{asgi} + {loop}": measure(
                asgi, loop, database.url, str(seeded[12]), args.seconds, args.connections
            )
            for asgi, loop in CONFIGURATIONS
        }
    default = next(iter(results.values()))
    print(
        f"1 worker, {args.connections} connections, {args.seconds:.0f} s per load, load by "
        f"{default['GET /health'].tool}, {os.cpu_count()} CPUs; ratio: to granian + uvloop"
    )
    print(
        f"{'load':<24}{'server + loop':<20}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}{'ratio':>8}"
    )
    for load_name in LOADS:
        for name, loads in results.items():
            load = loads[load_name]
            ratio = load.requests_per_s / default[load_name].requests_per_s
            print(
                f"{load_name:<24}{name:<20}{load.requests_per_s:>10,.0f}{load.p50_ms:>9.2f}"
                f"{load.p99_ms:>9.2f}{load.errors:>8}{ratio:>8.2f}"
            )


if __name__ == "__main__":
    main()
