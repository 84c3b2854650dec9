"""Serving: in-process decision latency, and HTTP serve throughput against ``/health``.

    python -m benchmarks.serving [--decisions 20000] [--seconds 8] [--connections 64]

1. **Decision latency, in process** — for 12 (3×2×2), 1,000 (10×10×10) and 10,000 (10⁴)
   variants, a cmab posterior fitted on synthetic bool cells with one context factor; the
   serve path's synchronous part timed call by call: context check, decision id (uuid4),
   holdout hash, Thompson decision (a pick from the context's pool of the version's 1,000
   posterior samples' winners) with its propensity, variant/key lookup and the exposure row
   appended to a buffer list. Pools are warm (the server computes one per model version and
   known context, off the event loop, on first use); that cold cost is printed separately.
2. **HTTP** — a durable embedded PostgreSQL, the 1,000-variant optimization trained (model
   version 1), ``levered server start`` (granian on uvloop, one worker, the rate limiter on
   with a rate too high to refuse anything, so its cost is included), loaded by ``wrk`` (Python
   fallback):
   ``GET /health`` (the framework's floor), then ``POST .../serve`` with exposure logging on for
   (a) a returning user (fixed ``anonymous_id``: sticky hit in process memory), (b) a new user
   per request without an id (server-generated id: assignment and exposure buffered), and (c) a
   new caller-supplied id per request (one database round trip to claim the sticky assignment).
   After the server has stopped (clean shutdown flushes the buffer) the exposures in the
   warehouse are counted against the 200s wrk saw. Last, a trivial Litestar app with one JSON
   POST route under granian: the floor of *any* POST endpoint in this stack.

Compare ratios: the load generator shares the 2 cores with the server and the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np

from benchmarks.loadgen import Load, parse_wrk, run_load
from benchmarks.server import UNLIMITED_SERVES, start_levered
from levered.bandit.cells import Cells
from levered.bandit.glm import fit_cmab
from levered.bandit.posterior import Posterior
from levered.bandit.sampler import warm_up
from levered.db import migrations
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import free_port, scratch_dir
from levered.db.pool import connect
from levered.server.run import default_loop
from levered.services.serving import clean_context, decide
from levered.services.serving_config import ServingConfig, build_config, compute_pool

SPACES: dict[int, tuple[int, ...]] = {12: (3, 2, 2), 1_000: (10, 10, 10), 10_000: (10,) * 4}
CONTEXTS = ({"segment": "a"}, {"segment": "b"})


def design_factors(counts: tuple[int, ...]) -> list[dict[str, Any]]:
    return [
        {"name": f"f{i}", "dtype": "str", "levels": [f"l{j}" for j in range(k)]}
        for i, k in enumerate(counts)
    ]


def fitted(counts: tuple[int, ...], rng: np.random.Generator) -> Posterior:
    n_variants = int(np.prod(counts))
    observed = np.sort(rng.choice(n_variants, min(n_variants, 2000), replace=False)) + 1
    numbers = np.concatenate([observed, observed])
    ctx = np.repeat([0, 1], observed.size)
    count = np.full(numbers.size, 200.0)
    successes = rng.binomial(200, rng.uniform(0.05, 0.2, numbers.size)).astype(np.float64)
    cells = Cells.of(numbers, count, successes, context_index=ctx, contexts=list(CONTEXTS))
    return fit_cmab(cells, counts, "bool")


def config_for(counts: tuple[int, ...], posterior: Posterior) -> ServingConfig:
    row = {
        "id": uuid.uuid4(),
        "organization_id": uuid.uuid4(),
        "status": "live",
        "model_type": "cmab",
        "design_factors": design_factors(counts),
        "context_factors": [{"name": "segment", "dtype": "str"}],
        "holdout_percentage": 10.0,
        "excluded_combinations": [],
        "sticky": True,
        "live_since": None,
        "model_id": uuid.uuid4(),
        "model_version": 1,
    }
    return build_config(row, posterior.encode(), None)


def decision_latency(n_variants: int, decisions: int, rng: np.random.Generator) -> str:
    counts = SPACES[n_variants]
    posterior = fitted(counts, rng)
    config = config_for(counts, posterior)
    began = time.perf_counter()
    compute_pool(config, config.known_context(CONTEXTS[0]))
    cold_ms = (time.perf_counter() - began) * 1e3
    compute_pool(config, config.known_context(CONTEXTS[1]))
    users = [f"user-{i}" for i in range(decisions)]
    sink: list[tuple[Any, ...]] = []

    def one(i: int) -> None:
        context = clean_context(config, CONTEXTS[i & 1])
        d = decide(config, users[i], context, uuid.uuid4())
        variant, _key = config.variant(d.variant_number)
        sink.append((config.id, users[i], variant, d.variant_number, context, d.propensity))

    for i in range(200):  # warm caches and branch predictors
        one(i)
    lat = np.empty(decisions)
    for i in range(decisions):
        t0 = time.perf_counter_ns()
        one(i)
        lat[i] = time.perf_counter_ns() - t0
    p50, p90, p99 = np.percentile(lat, [50, 90, 99]) / 1e3
    features = posterior.array("mean").size
    return (
        f"{n_variants:>8,} {features:>9} {p50:>9.1f} {p90:>9.1f} {p99:>9.1f}"
        f" {1e9 / lat.mean():>12,.0f}"
        f" {cold_ms:>14.1f}"
    )


# -- HTTP ----------------------------------------------------------------------------------------

UNIQUE_ID_LUA = """
local counter = 0
request = function()
  counter = counter + 1
  local body = '{"anonymous_id":"wrk-RUN-' .. counter .. '","context":{"segment":"a"}}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""

# The realistic mix: 90 % returning users (a pool of POOL ids with sticky assignments, warmed
# before measuring), 5 % new caller-supplied ids (a sticky claim in the database each), 5 % new
# users without an id (server-generated). Contexts split over both segments.
MIX_LUA = """
local counter = 0
init = function(args) math.randomseed(SEED) end
request = function()
  counter = counter + 1
  local r = math.random()
  local body
  if r < 0.90 then
    local u = math.random(POOL)
    local seg = (u % 2 == 0) and "a" or "b"
    body = '{"anonymous_id":"pool-' .. u .. '","context":{"segment":"' .. seg .. '"}}'
  elseif r < 0.95 then
    body = '{"anonymous_id":"mix-RUN-' .. counter .. '","context":{"segment":"b"}}'
  else
    body = '{"context":{"segment":"a"}}'
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""
MIX_POOL = 2_000


def wrk_script(url: str, seconds: float, connections: int, lua: str) -> Load:
    """wrk with a Lua request generator (RUN: a token making new ids unique per run)."""
    lua = lua.replace("RUN", uuid.uuid4().hex[:8]).replace("POOL", str(MIX_POOL))
    lua = lua.replace("SEED", str(int(time.time())))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(lua)
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
        out = subprocess.run(
            [*argv, "-s", str(script), url], capture_output=True, text=True, check=True
        ).stdout
    return parse_wrk(out)


async def seed_database(
    url: str, variants: list[int], rng: np.random.Generator
) -> dict[int, uuid.UUID]:
    """One trained live optimization per variant count."""
    conn = await connect(url)
    try:
        await migrations.migrate(conn)
        org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('bench') RETURNING id")
        metric = await conn.fetchval(
            "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
            "reward_type) VALUES ($1, 'm', 'SELECT 1', 'a', 't', 'bool') RETURNING id",
            org,
        )
        return {n: await _trained(conn, org, metric, SPACES[n], rng) for n in variants}
    finally:
        await conn.close()


async def _trained(
    conn: Any, org: uuid.UUID, metric: uuid.UUID, counts: tuple[int, ...], rng: np.random.Generator
) -> uuid.UUID:
    optimization: uuid.UUID = await conn.fetchval(
        "INSERT INTO optimizations (organization_id, name, status, model_type, design_factors,"
        " context_factors, reward_metric_id, attribution, holdout_percentage) VALUES ($1, "
        "'bench', 'live', 'cmab', $2, $3, $4, $5, 10) RETURNING id",
        org,
        design_factors(counts),
        [{"name": "segment", "dtype": "str"}],
        metric,
        {"type": "last_touch", "conversion_window_hours": 24},
    )
    model = await conn.fetchval(
        "INSERT INTO models (organization_id, optimization_id) VALUES ($1, $2) RETURNING id",
        org,
        optimization,
    )
    posterior = fitted(counts, rng)
    await conn.execute(
        "INSERT INTO model_versions (model_id, version, organization_id, kind, posterior, "
        "window_end, counts, seed) VALUES ($1, 1, $2, $3, $4, now(), '{}', 1)",
        model,
        org,
        posterior.kind,
        posterior.encode(),
    )
    await conn.execute(
        "UPDATE models SET current_version = 1, status = 'trained' WHERE id = $1", model
    )
    return optimization


async def count_exposures(url: str) -> int:
    conn = await connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM warehouse.exposures"))
    finally:
        await conn.close()


class _FloorBody(msgspec.Struct, forbid_unknown_fields=True):
    anonymous_id: str | None = None
    context: dict[str, Any] | None = None


class _FloorOut(msgspec.Struct):
    status: str


def post_floor_app() -> Any:
    """A Litestar app whose only route takes a JSON body into a Struct and returns a Struct:
    what any POST endpoint costs in this stack (granian + Litestar + msgspec), nothing else."""
    from litestar import Litestar, post
    from litestar.params import JSONBody

    @post("/post", status_code=200)
    async def echo(data: JSONBody[_FloorBody]) -> _FloorOut:
        return _FloorOut("ok")

    return Litestar([echo])


def start_post_floor(port: int) -> subprocess.Popen[bytes]:
    granian = Path(sys.executable).parent / "granian"
    process = subprocess.Popen(
        [
            str(granian),
            "--interface",
            "asgi",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--loop",
            default_loop(),  # the production server's loop (granian's "auto" may pick another)
            "benchmarks.serving:post_floor_app",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/post", json={}, timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the POST-floor app did not start")


def _requests(load: Load, seconds: float) -> int:
    return round(load.requests_per_s * seconds)


def http_benchmark(
    seconds: float, connections: int, variants: list[int], rng: np.random.Generator
) -> None:
    returning = '{"anonymous_id":"bench-user","context":{"segment":"a"}}'
    fresh = '{"context":{"segment":"a"}}'
    load_before = _loadavg()
    with scratch_dir("levered-bench-serve-") as root, EmbeddedPostgres(root / "data") as database:
        optimizations = asyncio.run(seed_database(database.url, variants, rng))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = start_levered(
            database.url,
            port,
            env=UNLIMITED_SERVES,
        )
        results: dict[str, Load] = {}
        health: dict[str, Load] = {}

        def measure(name: str, serve_load: Callable[[], Load]) -> None:
            # /health right before each serve load: both see the same background (PostgreSQL
            # vacuuming and checkpointing what earlier loads wrote), so the ratio does not
            # drift with the run's position.
            health[name] = run_load(f"{base}/health", seconds=seconds / 2, connections=connections)
            results[name] = serve_load()

        try:
            run_load(f"{base}/health", seconds=2, connections=connections)  # warm
            results["GET /health"] = run_load(
                f"{base}/health", seconds=seconds, connections=connections
            )
            for n, optimization in optimizations.items():
                url = f"{base}/api/v2/optimizations/{optimization}/serve"
                run_load(url, seconds=1, connections=connections, body=returning)  # load + warm
                measure(
                    f"serve {n:,}v, returning user",
                    partial(
                        run_load, url, seconds=seconds, connections=connections, body=returning
                    ),
                )
                measure(
                    f"serve {n:,}v, new user, no id",
                    partial(run_load, url, seconds=seconds, connections=connections, body=fresh),
                )
                if shutil.which("wrk"):
                    measure(
                        f"serve {n:,}v, new caller id (DB claim)",
                        partial(wrk_script, url, seconds, connections, UNIQUE_ID_LUA),
                    )
                    wrk_script(url, 2, connections, MIX_LUA)  # the pool's users get assignments
                    measure(
                        f"serve {n:,}v, mix 90/5/5",
                        partial(wrk_script, url, seconds, connections, MIX_LUA),
                    )
            results["GET /health, again"] = run_load(
                f"{base}/health", seconds=seconds, connections=connections
            )
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)
        stored = asyncio.run(count_exposures(database.url))
    floor_port = free_port()
    floor_process = start_post_floor(floor_port)
    try:
        results["POST floor (trivial JSON POST app)"] = run_load(
            f"http://127.0.0.1:{floor_port}/post",
            seconds=seconds,
            connections=connections,
            body=returning,
        )
    finally:
        floor_process.send_signal(signal.SIGINT)
        floor_process.wait(30)
    floor = results["GET /health"]
    print(
        f"\nHTTP, 1 worker (granian, {default_loop()}), {connections} connections, "
        f"{seconds:.0f} s each, "
        f"load by {floor.tool}, cmab trained, exposure logging on, rate limiter on, "
        f"load avg {load_before:.1f} → {_loadavg():.1f}"
    )
    print(
        "× health: against the first /health; × adjacent: against /health measured right "
        f"before that load ({seconds / 2:.0f} s)"
    )
    print(
        f"{'endpoint':<38}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'× health':>10}"
        f"{'adjacent':>10}{'× adjacent':>11}"
    )
    for name, load in results.items():
        ratio = load.requests_per_s / floor.requests_per_s
        line = (
            f"{name:<38}{load.requests_per_s:>10,.0f}{load.p50_ms:>9.2f}{load.p99_ms:>9.2f}"
            f"{load.errors:>8}{ratio:>10.2f}"
        )
        if name in health:
            near = health[name].requests_per_s
            line += f"{near:>10,.0f}{load.requests_per_s / near:>11.2f}"
        print(line)
    served = sum(
        _requests(load, seconds) for name, load in results.items() if name.startswith("serve")
    )
    print(
        f"exposures in the warehouse after shutdown: {stored:,} "
        f"(≈ {served:,} measured serves plus warm-up; rate × duration is approximate)"
    )


def _loadavg() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--http-variants", default="12,1000", help="comma-separated: 12,1000,10000")
    args = parser.parse_args()
    rng = np.random.default_rng(20261122)
    warm_up()
    load = _loadavg()
    print(
        f"decide() in process: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load avg {load:.1f}, {args.decisions:,} decisions each"
    )
    print(
        f"{'variants':>8} {'features':>9} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9}"
        f" {'decisions/s':>12}"
        f" {'cold pool ms':>14}"
    )
    for n_variants in SPACES:
        print(decision_latency(n_variants, args.decisions, rng), flush=True)
    if not args.skip_http:
        variants = [int(v) for v in args.http_variants.split(",")]
        http_benchmark(args.seconds, args.connections, variants, rng)


if __name__ == "__main__":
    main()
