"""Ingestion end to end through HTTP vs raw asyncpg COPY of the same rows, side by side.

    python -m benchmarks.ingest [--rounds 3] [--seconds 6] [--clients 8] [--workers 1]
                                [--asgi granian] [--load wrk|httpx]

Starts a *durable* embedded PostgreSQL (fsync and synchronous_commit on, as in production),
migrates it, creates an organization, an API key and an optimization, and starts
``levered server start`` (the production launcher, ``--asgi`` server, ``--workers`` processes).
Then ``--rounds`` times, each phase ``--seconds`` long, on the same growing table:

1. **raw COPY** (the baseline): ``--clients`` connections, each sending one
   ``copy_records_to_table`` statement per 500-row batch (its own transaction, no BEGIN or
   COMMIT round trips: the fastest way to store the same rows with the same unique
   idempotency index), rows already Python tuples, no validation;
2. **HTTP**: ``--clients`` concurrent keep-alive connections posting 500-event bodies to
   ``POST /api/v2/ingest/exposures`` (API key auth, validation against the design, COPY,
   durable commit). The load generator is ``wrk`` (C, one thread) when installed: its Lua
   script writes a request number into a pre-encoded body template, so every request carries
   new idempotency keys. Without wrk (or ``--load httpx``), async httpx clients in Python do the
   same — Python that costs the shared 2 cores about as much as parts of the server, so its
   ratio reads lower;
3. **HTTP, resent**: the round's HTTP requests again, every event a duplicate (the
   ``ON CONFLICT DO NOTHING`` path).

The rows are the same in all three: the template's 500 events, with keys unique per request.
Alternating short phases, instead of one long phase each, puts the baseline and the server
on the same disk, the same table size and the same neighbours; the ratios are of the totals
over the rounds, and each round's are printed to show the spread. Prints events/s, request
p50/p99, the server's resident memory (all its processes: idle, and the peak after an HTTP
phase) and the ratios, and checks that the rows stored by each HTTP phase are the ones its
clients were told were stored (exactly with httpx; within the requests in flight with wrk).
Each round's line also gives how busy the machine's CPUs were in each phase (all processes:
the load generator, the server, PostgreSQL).
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
from levered.db.embedded_host import free_port, scratch_dir
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


def body_template(opt: uuid.UUID) -> bytes:
    """One 500-event body whose idempotency keys are ``@R@-<i>-…``: the load generator writes a
    request number over ``@R@``, so every request is a new batch (or, replayed, a duplicate)."""
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


def copy_rows(org: uuid.UUID, opt: uuid.UUID, template: bytes) -> list[tuple[Any, ...]]:
    """The template's events as COPY-ready tuples (key still holding ``@R@``): the same rows
    the server stores for a request, so the baseline writes what the server writes."""
    rows: list[tuple[Any, ...]] = []
    for event in msgspec.json.decode(template)["events"]:
        variant = event["variant"]
        number = 1 + "abc".index(variant["headline"]) * 2 + int(variant["cta"])
        when = datetime.fromisoformat(event["timestamp"])
        rows.append(
            (
                org,
                opt,
                event["anonymous_id"],
                variant,
                number,
                event["context"],
                when,
                event["idempotency_key"],
            )
        )
    return rows


def numbered(rows: list[tuple[Any, ...]], n: int) -> list[tuple[Any, ...]]:
    """The rows of request number ``n``."""
    tag = str(n)
    return [(*row[:7], row[7].replace("@R@", tag)) for row in rows]


async def copy_phase(
    url: str, rows: list[tuple[Any, ...]], clients: int, seconds: float, first: int
) -> tuple[Run, int]:
    """(the run, batches stored): raw COPY for ``seconds``, request numbers from ``first``."""
    pool = await create_pool(url, min_size=clients, max_size=clients)
    latencies: list[float] = []
    counter = iter(range(first, first + 10**8))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                batch = numbered(rows, next(counter))
                started = time.perf_counter()
                await conn.copy_records_to_table(
                    "exposures", schema_name="warehouse", columns=COLUMNS, records=batch
                )
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return Run("raw COPY", len(latencies) * BATCH, elapsed, latencies), len(latencies)


INGEST_LUA = """
local counter = 0
local file = io.open("TEMPLATE", "rb")
local template = file:read("*a")
file:close()
-- The template cut at each @R@ once: a request joins the pieces with its number (one copy),
-- where a gsub per request scanned the 129 KB body and cost the shared CPUs 0.18 of a core.
local pieces, at = {}, 1
while true do
  local from, to = template:find("@R@", at, true)
  if not from then break end
  pieces[#pieces + 1] = template:sub(at, from - 1)
  at = to + 1
end
pieces[#pieces + 1] = template:sub(at)
local first, wrap = FIRST, WRAP
request = function()
  local n = counter
  if wrap > 0 then n = counter % wrap end
  counter = counter + 1
  return wrk.format("POST", "/api/v2/ingest/exposures",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer KEY"},
    table.concat(pieces, tostring(first + n)))
end
"""


def through_wrk(
    base: str, key: str, template: Path, clients: int, seconds: float, first: int, wrap: int
) -> tuple[Run, int]:
    """(the run, requests completed); request numbers ``first + 0, 1, …``, or with ``wrap``
    > 0 ``first + 0 … wrap−1`` over and over (a resend)."""
    label = "HTTP resent" if wrap else "HTTP"
    lua = INGEST_LUA.replace("TEMPLATE", str(template)).replace("KEY", key)
    script = template.with_name("ingest.lua")
    script.write_text(lua.replace("FIRST", str(first)).replace("WRAP", str(wrap)))
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    out = subprocess.run([*argv, base], capture_output=True, text=True, check=True).stdout
    load = parse_wrk(out)
    found = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no request count:\n{out}")
    if load.errors:
        raise RuntimeError(f"wrk saw {load.errors} errors or non-2xx responses:\n{out}")
    requests = int(found.group(1))
    run = Run(label, requests * BATCH, requests / load.requests_per_s, [])
    run.p50_ms, run.p99_ms = load.p50_ms, load.p99_ms
    return run, requests


async def through_httpx(
    base: str, key: str, template: bytes, clients: int, seconds: float, first: int, wrap: int
) -> tuple[Run, int]:
    """:func:`through_wrk`'s load from async httpx clients in this process."""
    label = "HTTP resent" if wrap else "HTTP"
    latencies: list[float] = []
    counter = iter(range(10**8))
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as http:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                n = next(counter)
                body = template.replace(b"@R@", str(first + (n % wrap if wrap else n)).encode())
                started = time.perf_counter()
                response = await http.post("/api/v2/ingest/exposures", content=body)
                if response.status_code != 200:
                    raise RuntimeError(f"unexpected {response.status_code}: {response.text[:200]}")
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return Run(label, len(latencies) * BATCH, elapsed, latencies), len(latencies)


def tree_rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20


async def stored_rows(url: str) -> int:
    """Stored exposures once the count is stable (a load generator may stop with requests in
    flight, which the server still commits)."""
    conn = await asyncpg.connect(url)
    try:
        n = -1
        while True:
            now = int(await conn.fetchval("SELECT count(*) FROM warehouse.exposures"))
            if now == n:
                return n
            n = now
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def total(label: str, runs: list[Run]) -> Run:
    return Run(
        label,
        sum(r.events for r in runs),
        sum(r.seconds for r in runs),
        [ms for r in runs for ms in r.latencies_ms],
        # wrk's percentiles per phase: their median stands for the whole.
        sorted(p50)[len(p50) // 2] if (p50 := [r.p50_ms for r in runs if r.p50_ms]) else None,
        max(p99) if (p99 := [r.p99_ms for r in runs if r.p99_ms]) else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="COPY, HTTP, resend: this often")
    parser.add_argument("--seconds", type=float, default=6, help="per phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--asgi", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument(
        "--load", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx"
    )
    args = parser.parse_args()

    copies: list[Run] = []
    posts: list[Run] = []
    resends: list[Run] = []
    checks: list[str] = []
    with (
        scratch_dir("levered-bench-ingest-") as root,
        EmbeddedPostgres(root / "data", durable=True) as database,
    ):
        url = database.url
        org, opt, key = asyncio.run(setup(url))
        template = root / "body-template.json"
        template.write_bytes(body_template(opt))
        rows = copy_rows(org, opt, template.read_bytes())
        asyncio.run(copy_phase(url, rows, args.clients, args.seconds, 10**9))  # warm-up

        port = free_port()
        server = start_levered(
            url,
            port,
            asgi=args.asgi,
            env={"LEVERED_DATA_DIR": str(root), "LEVERED_WORKERS": str(args.workers)},
        )
        try:
            base = f"http://127.0.0.1:{port}"
            idle_mb = peak_mb = tree_rss_mb(server.pid)

            def http(first: int, wrap: int) -> tuple[Run, int]:
                if args.load == "wrk":
                    return through_wrk(base, key, template, args.clients, args.seconds, first, wrap)
                body = template.read_bytes()
                return asyncio.run(
                    through_httpx(base, key, body, args.clients, args.seconds, first, wrap)
                )

            for round_ in range(args.rounds):
                first = (round_ + 1) * 10**7  # request numbers of this round's HTTP phase
                psutil.cpu_percent(None)
                copy_run, _ = asyncio.run(
                    copy_phase(url, rows, args.clients, args.seconds, 2 * 10**9 + first)
                )
                busy = [psutil.cpu_percent(None)]
                before = asyncio.run(stored_rows(url))
                psutil.cpu_percent(None)
                http_run, sent = http(first, 0)
                busy.append(psutil.cpu_percent(None))
                peak_mb = max(peak_mb, tree_rss_mb(server.pid))
                stored = asyncio.run(stored_rows(url)) - before
                psutil.cpu_percent(None)
                resent_run, _ = http(first, sent)
                busy.append(psutil.cpu_percent(None))
                extra = asyncio.run(stored_rows(url)) - before - stored
                # wrk stops with up to --clients requests in flight, which the server still
                # stores, and its request numbers are not exactly the ones it completed (the
                # resend of 0 … sent−1 stores one more request in most runs: a number generated
                # but never answered). Neither was acknowledged; the exact check, acknowledged
                # = stored and nothing more on the resend, is --load httpx's.
                acked = sent * BATCH
                slack = args.clients * BATCH if args.load == "wrk" else 0
                ok = acked <= stored <= acked + slack and extra <= slack
                checks.append(
                    f"round {round_ + 1}: stored {stored:,} for {acked:,} acknowledged, "
                    f"{extra:,} more on the resend: {'ok' if ok else 'MISMATCH'}"
                )
                copies.append(copy_run)
                posts.append(http_run)
                resends.append(resent_run)
                print(
                    f"  round {round_ + 1}: COPY {copy_run.rate:,.0f}, HTTP {http_run.rate:,.0f}"
                    f" ({http_run.rate / copy_run.rate:.2f}), resent {resent_run.rate:,.0f}"
                    f" ({resent_run.rate / copy_run.rate:.2f}) events/s; machine CPU busy "
                    + " / ".join(f"{b:.0f} %" for b in busy),
                    flush=True,
                )
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)

    print()
    print(
        f"{BATCH}-event batches, {args.clients} concurrent clients ({args.load}), {args.asgi} "
        f"with {args.workers} worker(s), durable PostgreSQL, {args.rounds} rounds of "
        f"{args.seconds:g} s per phase, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}"
    )
    print(f"{'path':<14}{'events/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    copy_all, http_all = total("raw COPY", copies), total("HTTP", posts)
    resent_all = total("HTTP resent", resends)
    for run in (copy_all, http_all, resent_all):
        print(
            f"{run.label:<14}{run.rate:>12,.0f}{run.percentile(0.5):>10.1f}"
            f"{run.percentile(0.99):>10.1f}"
        )
    for line in checks:
        print(line)
    print(f"server RSS: {idle_mb:.0f} MB idle, {peak_mb:.0f} MB at most under load")
    print(f"server RSS under load / idle: {peak_mb / idle_mb:.2f}")
    print(f"HTTP / raw COPY throughput ratio: {http_all.rate / copy_all.rate:.2f}")
    print(f"resent (all duplicates) / raw COPY: {resent_all.rate / copy_all.rate:.2f}")
    if any("MISMATCH" in line for line in checks):
        raise SystemExit("stored rows do not match what the clients were told")


if __name__ == "__main__":
    main()
