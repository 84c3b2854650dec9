"""Ingestion end to end through HTTP vs raw asyncpg COPY of the same rows, side by side.

    python -m benchmarks.ingest [--batches 400] [--clients 8] [--seconds 10] [--workers 1]
                                [--asgi granian] [--load wrk|httpx]

Starts a *durable* embedded PostgreSQL (fsync and synchronous_commit on, as in production),
migrates it, creates an organization, an API key and an optimization, and pre-encodes
``--batches`` request bodies of 500 exposures each (unique idempotency keys, offsets in the
timestamps). Then, on the same tables:

1. **baseline**: raw ``copy_records_to_table`` of the same rows (already as Python tuples, no
   validation), one transaction per 500-row batch, ``--clients`` connections in parallel;
2. **HTTP**: ``levered server start`` (the production launcher, ``--asgi`` server, ``--workers``
   processes) in a subprocess, ``--clients`` concurrent keep-alive HTTP connections posting
   500-event bodies to ``POST /api/v2/ingest/exposures`` (API key auth, validation against the
   design, COPY, durable commit). The load generator is ``wrk`` (C, one thread, ``--seconds``)
   when installed: its Lua script makes every request's idempotency keys unique by writing the
   request counter into a pre-encoded body template. Without wrk (or ``--load httpx``), async
   httpx clients post the ``--batches`` pre-encoded bodies — Python that costs the shared
   2 cores about as much as parts of the server, so its ratio reads lower;
3. **HTTP, resent**: the same bodies again: every event is a duplicate (the
   ``ON CONFLICT DO NOTHING`` path; wrk replays the first phase's request counters).

Prints events/s, request p50/p99, the server's resident memory (all its processes) and the
ratio HTTP / COPY, and checks the stored row counts against what the clients were told. The
load generator shares the machine's cores with the server and the database: compare ratios,
not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
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

from benchmarks.loadgen import parse_wrk
from benchmarks.server import start_levered
from levered.db import migrations
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import free_port, reachable_tempdir
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
    p50_ms: float | None = None
    p99_ms: float | None = None
    """Set when the load generator measured them itself (wrk)."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def percentile(self, q: float) -> float:
        given = {0.5: self.p50_ms, 0.99: self.p99_ms}.get(q)
        if given is not None:
            return given
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


INGEST_LUA = """
local counter = 0
local file = io.open("TEMPLATE", "rb")
local template = file:read("*a")
file:close()
local wrap = WRAP
request = function()
  local n = counter
  if wrap > 0 then n = counter % wrap end
  counter = counter + 1
  local body = (template:gsub("@R@", tostring(n)))
  return wrk.format("POST", "/api/v2/ingest/exposures",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer KEY"}, body)
end
"""


def body_template(opt: uuid.UUID) -> bytes:
    """One 500-event body whose idempotency keys are ``@R@-<i>``: the Lua script writes the
    request counter over ``@R@``, so every request is a new batch (or, replayed, a duplicate)."""
    start = datetime(2026, 6, 16, tzinfo=UTC)
    events = [
        {
            "anonymous_id": f"user-{i}",
            "optimization_id": str(opt),
            "variant": {"headline": "abc"[i % 3], "cta": bool(i % 2)},
            "context": {"country": "US" if i % 5 else "DE", "device": "mobile"},
            "timestamp": (start + timedelta(seconds=i)).isoformat(),
            "idempotency_key": f"@R@-{i:04d}-{uuid.uuid4().hex[:20]}",
        }
        for i in range(BATCH)
    ]
    return msgspec.json.encode({"events": events})


def through_wrk(
    base: str, key: str, template: Path, clients: int, seconds: float, wrap: int, label: str
) -> tuple[Run, int]:
    """(the run, requests wrk completed); ``wrap`` > 0 replays request counters 0..wrap−1."""
    lua = INGEST_LUA.replace("TEMPLATE", str(template)).replace("KEY", key)
    script = template.with_name(f"ingest-{label.replace(' ', '-')}.lua")
    script.write_text(lua.replace("WRAP", str(wrap)))
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "-s", str(script)]
    out = subprocess.run([*argv, base], capture_output=True, text=True, check=True).stdout
    load = parse_wrk(out)
    found = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no request count:\n{out}")
    if load.errors:
        raise RuntimeError(f"wrk saw {load.errors} errors or non-2xx responses:\n{out}")
    requests = int(found.group(1))
    print(f"  {label}: {requests:,} requests of {BATCH} events, all 2xx")
    elapsed = requests / load.requests_per_s
    run = Run(label, requests * BATCH, elapsed, [])
    run.p50_ms, run.p99_ms = load.p50_ms, load.p99_ms
    return run, requests


def tree_rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20


async def count_and_truncate(url: str, truncate: bool) -> int:
    """Stored exposures once the count is stable (a load generator may stop with requests in
    flight, which the server still commits), then optionally emptied."""
    conn = await asyncpg.connect(url)
    try:
        n = -1
        while True:
            now = int(await conn.fetchval("SELECT count(*) FROM warehouse.exposures"))
            if now == n:
                break
            n = now
            await asyncio.sleep(0.5)
        if truncate:
            await conn.execute("TRUNCATE warehouse.exposures")
        return n
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=400, help="batches of 500 exposures")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=10, help="per HTTP phase (wrk)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--asgi", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument(
        "--load", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx"
    )
    args = parser.parse_args()

    root = reachable_tempdir("levered-bench-ingest-")
    with EmbeddedPostgres(root / "data", durable=True) as database:
        url = database.url
        org, opt, key = asyncio.run(setup(url))
        bodies, rows = make_batches(org, opt, args.batches)
        total = args.batches * BATCH
        template = root / "body-template.json"
        template.write_bytes(body_template(opt))

        asyncio.run(baseline(url, rows[:10], args.clients))  # warm-up
        asyncio.run(count_and_truncate(url, truncate=True))
        copy_run = asyncio.run(baseline(url, rows, args.clients))
        assert asyncio.run(count_and_truncate(url, truncate=True)) == total

        port = free_port()
        server = start_levered(
            url,
            port,
            asgi=args.asgi,
            env={"LEVERED_DATA_DIR": str(root), "LEVERED_WORKERS": str(args.workers)},
        )
        try:
            base = f"http://127.0.0.1:{port}"
            idle_mb = tree_rss_mb(server.pid)
            if args.load == "wrk":
                http_run, sent = through_wrk(
                    base, key, template, args.clients, args.seconds, 0, "HTTP"
                )
                expected = sent * BATCH
            else:
                http_run = asyncio.run(through_http(base, key, bodies, args.clients, "HTTP"))
                expected = total
            busy_mb = tree_rss_mb(server.pid)
            stored = asyncio.run(count_and_truncate(url, truncate=False))
            if args.load == "wrk":
                resent, _ = through_wrk(
                    base, key, template, args.clients, args.seconds, sent, "HTTP resent"
                )
            else:
                resent = asyncio.run(through_http(base, key, bodies, args.clients, "HTTP resent"))
            after = asyncio.run(count_and_truncate(url, truncate=False))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)

    print()
    print(
        f"{BATCH}-event batches, {args.clients} concurrent clients ({args.load}), {args.asgi} "
        f"with {args.workers} worker(s), durable PostgreSQL, {os.cpu_count()} CPUs, "
        f"load avg {os.getloadavg()[0]:.1f}"
    )
    print(f"{'path':<14}{'events/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for run in (copy_run, http_run, resent):
        print(
            f"{run.label:<14}{run.rate:>12,.0f}{run.percentile(0.5):>10.1f}"
            f"{run.percentile(0.99):>10.1f}"
        )
    # wrk stops with up to --clients requests in flight, which the server still stores.
    slack = args.clients * BATCH if args.load == "wrk" else 0
    verdict = "ok" if expected <= stored <= expected + slack else "MISMATCH"
    print(
        f"stored after HTTP: {stored:,} (acknowledged {expected:,}: {verdict}); "
        f"after the resend: {after:,} ({'ok' if after == stored else 'MISMATCH'})"
    )
    print(f"server RSS: {idle_mb:.0f} MB idle, {busy_mb:.0f} MB after the run")
    print(f"HTTP / raw COPY throughput ratio: {http_run.rate / copy_run.rate:.2f}")
    print(f"resent (all duplicates) / raw COPY: {resent.rate / copy_run.rate:.2f}")


if __name__ == "__main__":
    main()
