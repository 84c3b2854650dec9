"""Ingestion end to end through HTTP vs raw asyncpg COPY of the same rows, side by side.

    python -m benchmarks.ingest [--batches 400] [--clients 8] [--workers 1] [--asgi granian]

Starts a *durable* embedded PostgreSQL (fsync and synchronous_commit on, as in production),
migrates it, creates an organization, an API key and an optimization, and pre-encodes
``--batches`` request bodies of 500 exposures each (unique idempotency keys, offsets in the
timestamps). Then, on the same tables:

1. **baseline**: raw ``copy_records_to_table`` of the same rows (already as Python tuples, no
   validation), one transaction per 500-row batch, ``--clients`` connections in parallel;
2. **HTTP**: ``levered server start`` (the production launcher, ``--asgi`` server, ``--workers``
   processes) in a subprocess, ``--clients`` concurrent keep-alive HTTP clients posting the
   bodies to ``POST /api/v2/ingest/exposures`` (API key auth, validation against the design,
   COPY, durable commit);
3. **HTTP, resent**: the same bodies again: every event is a duplicate (the
   ``ON CONFLICT DO NOTHING`` path).

Prints events/s, request p50/p99, the server's resident memory (all its processes) and the
ratio HTTP / COPY. The load generator shares the machine's cores with the server and the
database: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import psutil

from levered.db import migrations
from levered.db.embedded import EmbeddedPostgres, free_port, reachable_tempdir
from levered.db.pool import connect, create_pool
from levered.services.tokens import digest, new_api_key

BATCH = 500
DESIGN = [
    {"name": "headline", "dtype": "str", "levels": ["a", "b", "c"]},
    {"name": "cta", "dtype": "bool", "levels": [False, True]},
]
COLUMNS = (
    "organization_id",
    "optimization_id",
    "anonymous_id",
    "variant",
    "variant_number",
    "context",
    "timestamp",
    "idempotency_key",
)


@dataclass
class Run:
    label: str
    events: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def setup(url: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    conn = await connect(url)
    try:
        await migrations.migrate(conn)
        org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('bench') RETURNING id")
        key, prefix = new_api_key()
        await conn.execute(
            "INSERT INTO api_keys (organization_id, label, prefix, secret_hash) "
            "VALUES ($1, 'bench', $2, $3)",
            org,
            prefix,
            digest(key),
        )
        opt = await conn.fetchval(
            "INSERT INTO optimizations (organization_id, name, status, model_type, "
            "design_factors, attribution, holdout_percentage) "
            "VALUES ($1, 'bench', 'live', 'cmab', $2, $3, 10) RETURNING id",
            org,
            DESIGN,
            {"type": "last_touch", "conversion_window_hours": 24},
        )
        return org, opt, key
    finally:
        await conn.close()


def make_batches(
    org: uuid.UUID, opt: uuid.UUID, batches: int
) -> tuple[list[bytes], list[list[tuple[Any, ...]]]]:
    """The same events twice: as HTTP bodies and as COPY-ready tuples (baseline)."""
    bodies: list[bytes] = []
    rows: list[list[tuple[Any, ...]]] = []
    start = datetime(2026, 6, 16, tzinfo=UTC)
    for b in range(batches):
        events: list[dict[str, Any]] = []
        batch_rows: list[tuple[Any, ...]] = []
        for i in range(BATCH):
            n = b * BATCH + i
            headline, cta = "abc"[n % 3], bool(n % 2)
            variant = {"headline": headline, "cta": cta}
            context = {"country": "US" if n % 5 else "DE", "device": "mobile"}
            when = start + timedelta(seconds=n)
            key = uuid.uuid4().hex
            anonymous_id = f"user-{n % 100_000}"
            events.append(
                {
                    "anonymous_id": anonymous_id,
                    "optimization_id": str(opt),
                    "variant": variant,
                    "context": context,
                    "timestamp": when.isoformat(),
                    "idempotency_key": key,
                }
            )
            number = 1 + (n % 3) * 2 + int(cta)
            batch_rows.append((org, opt, anonymous_id, variant, number, context, when, key))
        bodies.append(msgspec.json.encode({"events": events}))
        rows.append(batch_rows)
    return bodies, rows


async def baseline(url: str, rows: list[list[tuple[Any, ...]]], clients: int) -> Run:
    pool = await create_pool(url, min_size=clients, max_size=clients)
    queue: asyncio.Queue[list[tuple[Any, ...]]] = asyncio.Queue()
    for batch in rows:
        queue.put_nowait(batch)
    latencies: list[float] = []

    async def worker() -> None:
        async with pool.acquire() as conn:
            while not queue.empty():
                batch = queue.get_nowait()
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "exposures", schema_name="warehouse", columns=COLUMNS, records=batch
                    )
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return Run("raw COPY", len(rows) * BATCH, elapsed, latencies)


async def through_http(base: str, key: str, bodies: list[bytes], clients: int, label: str) -> Run:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    counted = {"accepted": 0, "duplicates": 0, "errors": 0}
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as http:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                response = await http.post("/api/v2/ingest/exposures", content=body)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    counted["errors"] += 1
                    print(f"  unexpected {response.status_code}: {response.text[:200]}")
                    continue
                result = response.json()
                counted["accepted"] += result["accepted"]
                counted["duplicates"] += result["duplicates"]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    print(f"  {label}: {counted}")
    return Run(label, len(bodies) * BATCH, elapsed, latencies)


def serve(url: str, data_dir: Path, port: int, asgi: str, workers: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ) | {
        "LEVERED_DATABASE_URL": url,
        "LEVERED_DATA_DIR": str(data_dir),
        "LEVERED_PORT": str(port),
        "LEVERED_WORKERS": str(workers),
        "LEVERED_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.app", "server", "start", "--asgi", asgi],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server ({asgi}) did not become ready")


def tree_rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20


async def count_and_truncate(url: str, truncate: bool) -> int:
    conn = await asyncpg.connect(url)
    try:
        n = int(await conn.fetchval("SELECT count(*) FROM warehouse.exposures"))
        if truncate:
            await conn.execute("TRUNCATE warehouse.exposures")
        return n
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=400, help="batches of 500 exposures")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--asgi", choices=("granian", "uvicorn"), default="granian")
    args = parser.parse_args()

    root = reachable_tempdir("levered-bench-ingest-")
    with EmbeddedPostgres(root / "data", durable=True) as database:
        url = database.url
        org, opt, key = asyncio.run(setup(url))
        bodies, rows = make_batches(org, opt, args.batches)
        total = args.batches * BATCH

        asyncio.run(baseline(url, rows[:10], args.clients))  # warm-up
        asyncio.run(count_and_truncate(url, truncate=True))
        copy_run = asyncio.run(baseline(url, rows, args.clients))
        assert asyncio.run(count_and_truncate(url, truncate=True)) == total

        port = free_port()
        server = serve(url, root, port, args.asgi, args.workers)
        try:
            base = f"http://127.0.0.1:{port}"
            idle_mb = tree_rss_mb(server.pid)
            http_run = asyncio.run(through_http(base, key, bodies, args.clients, "HTTP"))
            busy_mb = tree_rss_mb(server.pid)
            stored = asyncio.run(count_and_truncate(url, truncate=False))
            resent = asyncio.run(through_http(base, key, bodies, args.clients, "HTTP resent"))
            after = asyncio.run(count_and_truncate(url, truncate=False))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)

    print()
    print(
        f"{total:,} exposures in batches of {BATCH}, {args.clients} concurrent clients, "
        f"{args.asgi} with {args.workers} worker(s), durable PostgreSQL, {os.cpu_count()} CPUs"
    )
    print(f"{'path':<14}{'events/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for run in (copy_run, http_run, resent):
        print(
            f"{run.label:<14}{run.rate:>12,.0f}{run.percentile(0.5):>10.1f}"
            f"{run.percentile(0.99):>10.1f}"
        )
    print(f"stored after HTTP: {stored:,} (expected {total:,}); after the resend: {after:,}")
    print(f"server RSS: {idle_mb:.0f} MB idle, {busy_mb:.0f} MB after the run")
    print(f"HTTP / raw COPY throughput ratio: {http_run.rate / copy_run.rate:.2f}")
    print(f"resent (all duplicates) / raw COPY: {resent.rate / copy_run.rate:.2f}")
    print(f"mean request latency: {statistics.mean(http_run.latencies_ms):.1f} ms")


if __name__ == "__main__":
    main()
