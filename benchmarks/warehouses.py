"""The same exposures with rewards attributed on the managed warehouse, on ClickHouse (chdb)
and inside the customer's own PostgreSQL (exposures and rewards both there: push-down).

    python -m benchmarks.warehouses [--sizes 1e6,1e7] [--providers managed,clickhouse,native]

For each history size N, in one embedded PostgreSQL (non-durable) and one chdb data directory:
the training benchmark's organization, optimization and traffic (benchmarks/training.py: N
exposures at 10⁶ a day, ≈ 5 % purchases inside a 24 h window, a pageview at every 10th), then

1. **managed**: a rebuild as of the history's maturity (``A + 1 d``), then one more day of
   exposures and rewards and an incremental pass as of now;
2. the organization's rewards are copied into chdb (``analytics.rewards``, the same columns; the
   metric SQL text is the same in both dialects) and the organization is switched to it;
3. **clickhouse**: the same two passes — the exposures stay in Levered's store, the rewards of
   each chunk's windows are read from chdb (attribution is not pushed down into ClickHouse);
4. **native**: the organization's exposures and rewards are copied into a second embedded
   PostgreSQL (the customer's: ``analytics.app_exposures`` with the two indexes docs/warehouse.md
   recommends, ``analytics.rewards``), which is connected with its exposures table mapped; the
   same two passes run *inside* that cluster (:mod:`levered.db.native_exposures`), only cells
   come back. Its incremental pass also re-reads the 6-hour reload buffer.

After each provider's incremental pass the cells are compared: they must be equal. Printed: the
seconds of each pass on each provider and the ratios to managed. Both clusters share the
machine's cores. Figures are only worth recording from a quiet machine (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.peaks import Phase, measured
from benchmarks.training import NEW, RATE, TIMEOUT_S, WINDOW_H, load, seed_history, setup
from levered.bandit.sampler import warm_up
from levered.db import attribution, connections, migrations
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import reachable_tempdir
from levered.db.pool import connect
from levered.services import cells
from levered.services.secret_box import SecretBox
from levered.services.warehouse import Warehouse

PROVIDERS = ("managed", "clickhouse", "native")

CELLS = (
    "SELECT bucket, variant_number, holdout, context::text, exposures, reward_sum, reward_sumsq "
    "FROM observation_cells WHERE optimization_id = $1 "
    "ORDER BY bucket, variant_number, holdout, context::text"
)
REWARDS_CSV = (
    "SELECT anonymous_id, to_char(\"timestamp\" AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD HH24:MI:SS.US'), value, name FROM warehouse.rewards WHERE organization_id = $1"
)
EXPOSURES_COLUMNS = 'anonymous_id, optimization_id, variant, context, "timestamp", holdout'
CUSTOMER_SETUP = """
CREATE SCHEMA analytics;
CREATE TABLE analytics.app_exposures (
    anonymous_id text, optimization_id uuid, variant jsonb, context jsonb,
    "timestamp" timestamptz, holdout boolean);
CREATE TABLE analytics.rewards (
    anonymous_id text, "timestamp" timestamptz, value float8, name text);
"""
CUSTOMER_INDEXES = """
CREATE INDEX ON analytics.app_exposures (optimization_id, anonymous_id, "timestamp");
CREATE INDEX ON analytics.app_exposures (optimization_id, "timestamp");
CREATE INDEX ON analytics.rewards (name, "timestamp");
ANALYZE analytics.app_exposures; ANALYZE analytics.rewards;
"""
MAPPING = {
    "table": "app_exposures",
    "columns": {
        "anonymous_id": "anonymous_id",
        "optimization_id": "optimization_id",
        "variant": "variant",
        "timestamp": "timestamp",
        "context": "context",
        "holdout": "holdout",
    },
}
CREATE_REWARDS = [
    "CREATE DATABASE IF NOT EXISTS analytics",
    "CREATE TABLE analytics.rewards (anonymous_id String, timestamp DateTime64(6, 'UTC'), "
    "value Float64, name LowCardinality(String)) ENGINE = MergeTree ORDER BY (name, timestamp)",
]


@dataclass
class Result:
    size: int
    seed_s: float
    copy_s: float
    passes: dict[str, Phase]
    """``managed rebuild``, ``managed incremental``, ``clickhouse rebuild``, …"""


async def copy_rewards(url: str, org: uuid.UUID, writer: Any, scratch: Path) -> None:
    """The organization's rewards into chdb: a CSV from PostgreSQL, read by the writer (the
    customer's own connection: not Levered's read-only session)."""
    csv = scratch / "rewards.csv"
    conn = await connect(url)
    try:
        with csv.open("wb") as out:
            await conn.copy_from_query(REWARDS_CSV, org, output=out, format="csv")
    finally:
        await conn.close()
    writer.query("TRUNCATE TABLE analytics.rewards")
    writer.query(
        f"INSERT INTO analytics.rewards SELECT * FROM file('{csv}', 'CSV', "
        "'anonymous_id String, timestamp DateTime64(6, \\'UTC\\'), value Float64, name String')"
    )
    csv.unlink()


async def copy_to_customer(url: str, customer: str, org: uuid.UUID, scratch: Path) -> None:
    """The organization's exposures and rewards into the customer's cluster (binary COPY
    through a file), indexed and analyzed as a customer's tables would be."""
    source, target = await connect(url), await connect(customer)
    try:
        await target.execute("DROP SCHEMA IF EXISTS analytics CASCADE")
        await target.execute(CUSTOMER_SETUP)
        for table, query in (
            ("app_exposures", f"SELECT {EXPOSURES_COLUMNS} FROM warehouse.exposures "
             "WHERE organization_id = $1"),
            ("rewards", 'SELECT anonymous_id, "timestamp", value, name FROM warehouse.rewards '
             "WHERE organization_id = $1"),
        ):  # fmt: skip
            dump = scratch / f"{table}.bin"
            with dump.open("wb") as out:
                await source.copy_from_query(query, org, output=out, format="binary")
            with dump.open("rb") as data:
                await target.copy_to_table(
                    table, source=data, schema_name="analytics", format="binary"
                )
            dump.unlink()
        await target.execute(CUSTOMER_INDEXES)
    finally:
        await source.close()
        await target.close()


async def connect_customer(url: str, customer: str, org: uuid.UUID, box: SecretBox) -> None:
    """The customer's cluster as the organization's warehouse, its exposures table mapped."""
    parsed = urlsplit(customer)
    settings = {
        "host": parsed.hostname,
        "port": parsed.port,
        "database": parsed.path.lstrip("/"),
        "username": parsed.username,
        "sslmode": "disable",
    }
    conn = await connect(url)
    try:
        secret = box.seal(parsed.password or "")
        await connections.connect(conn, org, "postgres", "analytics", settings, secret, [])
        assert await connections.set_exposures(conn, org, MAPPING)
    finally:
        await conn.close()


async def run_size(
    url: str,
    pgdata: Path,
    store: Path,
    writer: Any,
    size: int,
    scratch: Path,
    customer: str,
    providers: tuple[str, ...] = PROVIDERS,
) -> Result:
    conn = await connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS warehouse CASCADE")
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await migrations.migrate(conn)
        org, opt = await setup(conn)
    finally:
        await conn.close()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    end = hour - timedelta(days=3, hours=1)
    as_of0 = end + timedelta(hours=WINDOW_H)
    started = time.perf_counter()
    await seed_history(url, (org, opt), size, end)
    seed_s = time.perf_counter() - started
    box = SecretBox("benchmark")

    async def extend(pool: Any, as_of: datetime, rebuild: bool) -> cells.Pass:
        wh = Warehouse(pool, secrets=lambda: box, chdb_root=str(store.parent))
        async with pool.acquire() as app:
            found = await attribution.find_target(app, org, opt)
        assert found is not None and found[1] is not None
        done = await cells.extend(
            wh, org, found[0], found[1], as_of=as_of, rebuild=rebuild, timeout_s=TIMEOUT_S
        )
        assert done is not None and done.rebuilt == rebuild
        return done

    passes: dict[str, Phase] = {}
    found_cells: dict[str, list[Any]] = {}
    copy_s = 0.0
    for provider in providers:
        if provider == "native":
            started = time.perf_counter()
            await copy_to_customer(url, customer, org, scratch)
            copy_s += time.perf_counter() - started
            await connect_customer(url, customer, org, box)
        if provider == "clickhouse":
            started = time.perf_counter()
            await copy_rewards(url, org, writer, scratch)
            copy_s += time.perf_counter() - started
            conn = await connect(url)
            try:
                await connections.connect(
                    conn,
                    org,
                    "clickhouse",
                    "analytics",
                    {"url": f"chdb://{store}", "username": "default"},
                    None,
                    [],
                )
            finally:
                await conn.close()
        phase, _ = await measured(url, pgdata, lambda pool: extend(pool, as_of0, True))
        passes[f"{provider} rebuild"] = phase
        if provider == "managed":  # the next day arrives once, before the managed pass
            await load(url, (org, opt), size, size + NEW, size // 2, as_of0 + timedelta(minutes=1))
        phase, _ = await measured(url, pgdata, lambda pool: extend(pool, hour, False))
        passes[f"{provider} incremental"] = phase
        conn = await connect(url)
        try:
            found_cells[provider] = [tuple(r) for r in await conn.fetch(CELLS, opt)]
        finally:
            await conn.close()
    for provider in providers[1:]:
        assert found_cells[provider] == found_cells["managed"], f"the cells differ on {provider}"
    return Result(size, seed_s, copy_s, passes)


def report(results: list[Result], providers: tuple[str, ...]) -> None:
    others = providers[1:]
    print(f"\n{os.cpu_count()} CPUs; seconds per pass; ratio = provider / managed")
    for kind in ("rebuild", "incremental"):
        header = f"{'history':>11} {'seed s':>6} {'copy s':>6} | {'managed':>8}" + "".join(
            f" {p:>10} {'ratio':>5}" for p in others
        )
        print(f"\n{kind}{' (+1 day)' if kind == 'incremental' else ''}")
        print(header)
        print("-" * len(header))
        for r in results:
            m = r.passes[f"managed {kind}"].seconds
            seconds = [r.passes[f"{p} {kind}"].seconds for p in others]
            cols = "".join(f" {t:>10.2f} {t / m:>5.2f}" for t in seconds)
            print(f"{r.size:>11,} {r.seed_s:>6.0f} {r.copy_s:>6.1f} | {m:>8.2f}{cols}")
    for p in others:
        for kind in ("rebuild", "incremental"):
            ratios = ", ".join(
                f"{r.passes[f'{p} {kind}'].seconds / r.passes[f'managed {kind}'].seconds:.2f}"
                for r in results
            )
            print(f"ratio {p} / managed, {kind}: {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1e6,1e7", help="history sizes (exposures)")
    parser.add_argument(
        "--providers", default=",".join(PROVIDERS), help="managed first, then any of the others"
    )
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    providers = tuple(args.providers.split(","))
    if providers[0] != "managed" or not set(providers) <= set(PROVIDERS):
        parser.error(f"--providers: managed first, then any of {', '.join(PROVIDERS[1:])}")
    warm_up()
    import chdb

    root = reachable_tempdir("levered-bench-warehouses-")
    store = root / "chdb" / "shop"
    store.mkdir(parents=True)
    writer = chdb.connect(f"file:{store}")
    for statement in CREATE_REWARDS:
        writer.query(statement)
    results: list[Result] = []
    try:
        with (
            EmbeddedPostgres(root / "data", durable=False) as database,
            EmbeddedPostgres(root / "customer", durable=False) as customer,
        ):
            for size in sizes:
                r = asyncio.run(
                    run_size(
                        database.url,
                        database.pgdata,
                        store,
                        writer,
                        size,
                        root,
                        customer.url,
                        providers,
                    )
                )
                results.append(r)
                print(
                    f"{size:>11,}: seeded in {r.seed_s:.0f} s, "
                    + ", ".join(f"{k} {p.seconds:.2f} s" for k, p in r.passes.items())
                    + f"; cells equal; load avg {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    finally:
        writer.close()
        shutil.rmtree(root, ignore_errors=True)
    report(results, providers)
    print(f"(history at {RATE:,} exposures a day)")


if __name__ == "__main__":
    main()
