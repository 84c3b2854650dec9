"""Granian vs uvicorn serving the real Levered app's ``GET /health``, side by side.

    python -m benchmarks.asgi_servers [--seconds 10] [--connections 64]

Starts one embedded PostgreSQL (the app's lifespan needs a pool), then for each ASGI server
runs ``levered server start --asgi NAME`` with one worker, loads ``/health`` and prints
requests/s, p50/p99, and granian's ratio to uvicorn. The load generator shares the machine's
2 cores, so compare the ratio, not the absolutes.
"""

from __future__ import annotations

import argparse
import os
import signal

from benchmarks.loadgen import Load, run_load
from benchmarks.server import start_levered
from levered.db.embedded import EmbeddedPostgres, free_port, reachable_tempdir


def measure(asgi: str, url: str, seconds: float, connections: int) -> Load:
    port = free_port()
    process = start_levered(url, port, asgi=asgi)
    try:
        run_load(f"http://127.0.0.1:{port}/health", seconds=2, connections=connections)  # warm
        return run_load(f"http://127.0.0.1:{port}/health", seconds=seconds, connections=connections)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with EmbeddedPostgres(reachable_tempdir("levered-bench-") / "data") as database:
        results = {
            name: measure(name, database.url, args.seconds, args.connections)
            for name in ("granian", "uvicorn")
        }
    print(
        f"GET /health, 1 worker, {args.connections} connections, {args.seconds:.0f} s, "
        f"load by {results['granian'].tool}, {os.cpu_count()} CPUs"
    )
    print(f"{'server':<10}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, load in results.items():
        print(
            f"{name:<10}{load.requests_per_s:>12.0f}{load.p50_ms:>10.2f}{load.p99_ms:>10.2f}"
            f"{load.errors:>8}"
        )
    ratio = results["granian"].requests_per_s / results["uvicorn"].requests_per_s
    print(f"granian / uvicorn throughput ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
