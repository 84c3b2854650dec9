"""Training against the real warehouse: versions, immutability, the lock, failures, scheduler.

The helpers at the top (``make_optimization``, ``simulate``) are shared with the models and
results API tests: simulated traffic written with COPY, with the per-user outcomes a hand
computation needs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from levered.bandit.posterior import Posterior
from levered.bandit.results import summarize
from levered.db import models as models_db
from levered.db import serving as serving_db
from levered.db.pool import create_pool
from levered.errors import Conflict, NotFound
from levered.schemas.models import ModelVersion
from levered.server.app import create_app
from levered.services import scheduler, training
from levered.services.warehouse import Warehouse
from levered.settings import Settings
from tests.conftest import Org

pytestmark = pytest.mark.anyio

DESIGN = [{"name": "headline", "levels": ["a", "b", "c"]}]
PURCHASE_SQL = (
    "SELECT anonymous_id, timestamp, value FROM rewards "
    "WHERE name = 'purchase' AND timestamp >= @start_date"
)
EXPOSURE_COLUMNS = [
    "organization_id",
    "optimization_id",
    "anonymous_id",
    "variant",
    "variant_number",
    "context",
    "timestamp",
    "holdout",
]
REWARD_COLUMNS = ["organization_id", "anonymous_id", "name", "value", "timestamp"]


async def make_optimization(
    conn: asyncpg.Connection,
    org: Org,
    *,
    reward_type: str = "bool",
    model_type: str = "cmab",
    with_metric: bool = True,
    status: str = "live",
    holdout_percentage: float = 10.0,
    context: tuple[str, ...] = ("country",),
) -> UUID:
    """A metric (``purchase`` rows) and an optimization over ``DESIGN``, with its model row
    (as the optimizations service creates it)."""
    metric_id = None
    if with_metric:
        metric_id = await conn.fetchval(
            "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
            "value_col, reward_type) VALUES ($1, 'Purchases', $2, 'anonymous_id', 'timestamp', "
            "'value', $3) RETURNING id",
            org.id,
            PURCHASE_SQL,
            reward_type,
        )
    optimization_id: UUID = await conn.fetchval(
        "INSERT INTO optimizations (organization_id, name, status, model_type, design_factors, "
        "context_factors, reward_metric_id, attribution, holdout_percentage) "
        "VALUES ($1, 'Hero', $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        org.id,
        status,
        model_type,
        DESIGN,
        [{"name": name, "dtype": "str"} for name in context],
        metric_id,
        {"type": "last_touch", "conversion_window_hours": 1},
        holdout_percentage,
    )
    await conn.execute(
        "INSERT INTO models (organization_id, optimization_id) VALUES ($1, $2)",
        org.id,
        optimization_id,
    )
    return optimization_id


@dataclass
class Traffic:
    """What was simulated: per-user outcome by arm (for the measured-lift hand computation)."""

    optimized: dict[str, float] = field(default_factory=dict)
    holdout: dict[str, float] = field(default_factory=dict)
    exposures: dict[int, int] = field(default_factory=dict)


async def simulate(
    conn: asyncpg.Connection,
    org: Org,
    optimization_id: UUID,
    *,
    users: int,
    rates: tuple[float, ...] = (0.05, 0.10, 0.30),
    reward_type: str = "bool",
    holdout_every: int = 10,
    seed: int = 1,
    prefix: str = "u",
    start: datetime | None = None,
) -> Traffic:
    """``users`` users, one exposure each, variants round-robin (every ``holdout_every``-th
    user is holdout and sees variant 1), all matured by now (window 1 h, days ago).
    Bool: a reward with probability ``rates[v]``; numeric: value ~ N(10 · rates[v], 1) with
    probability 0.5 (so the mean is 5 · rates[v])."""
    rng = random.Random(seed)
    start = start or datetime.now(UTC) - timedelta(days=3)
    exposures: list[tuple[Any, ...]] = []
    rewards: list[tuple[Any, ...]] = []
    traffic = Traffic()
    for i in range(users):
        anonymous_id = f"{prefix}{i}"
        holdout = holdout_every > 0 and i % holdout_every == 0
        number = 1 if holdout else 1 + i % len(rates)
        at = start + timedelta(seconds=30 * i)
        context = {"country": "DE" if i % 2 else "US"}
        exposures.append(
            (
                org.id,
                optimization_id,
                anonymous_id,
                {"headline": DESIGN[0]["levels"][number - 1]},
                number,
                context,
                at,
                holdout,
            )
        )
        traffic.exposures[number] = traffic.exposures.get(number, 0) + 1
        outcome = 0.0
        if reward_type == "bool":
            if rng.random() < rates[number - 1]:
                outcome = 1.0
                rewards.append((org.id, anonymous_id, "purchase", 1.0, at + timedelta(minutes=5)))
        elif rng.random() < 0.5:
            outcome = round(rng.gauss(10.0 * rates[number - 1], 1.0), 3)
            rewards.append((org.id, anonymous_id, "purchase", outcome, at + timedelta(minutes=5)))
        (traffic.holdout if holdout else traffic.optimized)[anonymous_id] = outcome
    await conn.copy_records_to_table(
        "exposures", schema_name="warehouse", records=exposures, columns=EXPOSURE_COLUMNS
    )
    if rewards:
        await conn.copy_records_to_table(
            "rewards", schema_name="warehouse", records=rewards, columns=REWARD_COLUMNS
        )
    return traffic


# -- tests ------------------------------------------------------------------------------------


@pytest.fixture
async def wh(db_url: str) -> AsyncIterator[Warehouse]:
    pool = await create_pool(db_url, min_size=1, max_size=6)
    try:
        yield Warehouse(pool)
    finally:
        await pool.close()


async def version_row(conn: asyncpg.Connection, optimization_id: UUID, version: int) -> Any:
    return await conn.fetchrow(
        "SELECT mv.* FROM model_versions mv JOIN models m ON m.id = mv.model_id "
        "WHERE m.optimization_id = $1 AND m.deleted_at IS NULL AND mv.version = $2",
        optimization_id,
        version,
    )


async def model_row(conn: asyncpg.Connection, optimization_id: UUID) -> Any:
    return await conn.fetchrow(
        "SELECT * FROM models WHERE optimization_id = $1 AND deleted_at IS NULL", optimization_id
    )


def best_index(posterior: Posterior) -> int:
    return int(np.argmax(summarize(posterior, n_draws=1000, seed=3).prob_best))


@pytest.mark.parametrize(
    ("reward_type", "model_type", "kind"),
    [
        ("bool", "cmab", "laplace_logistic"),
        ("bool", "mab", "beta"),
        ("numeric", "cmab", "laplace_gaussian"),
        ("numeric", "mab", "nig"),
    ],
)
async def test_training_writes_a_version_and_the_best_variant_wins(
    conn: asyncpg.Connection, wh: Warehouse, org: Org, reward_type: str, model_type: str, kind: str
) -> None:
    optimization_id = await make_optimization(
        conn, org, reward_type=reward_type, model_type=model_type
    )
    traffic = await simulate(conn, org, optimization_id, users=1500, reward_type=reward_type)
    version = await training.train(wh, org.id, optimization_id, seed=42)
    assert version.version == 1 and version.kind == kind and version.seed == 42

    row = await version_row(conn, optimization_id, 1)
    assert row["kind"] == kind and row["seed"] == 42 and row["organization_id"] == org.id
    assert row["window_start"] is None and row["window_end"] == version.window_end
    counts = row["counts"]
    assert counts["matured"] == 1500 and counts["pending"] == 0 and counts["seed"] == 42
    assert counts["exposures"] == {str(k): v for k, v in sorted(traffic.exposures.items())}
    assert counts["holdout_users"] == len(traffic.holdout)
    assert counts["optimized_users"] == len(traffic.optimized)
    assert set(counts["seconds"]) == {"attribution", "fit"}
    assert all(isinstance(s, float) and s >= 0 for s in counts["seconds"].values())
    posterior = Posterior.decode(row["posterior"])
    assert posterior.kind == kind and posterior.level_counts == [3]
    assert best_index(posterior) == 2  # variant 3 has the planted best rate

    model = await model_row(conn, optimization_id)
    assert (model["status"], model["current_version"], model["last_error"]) == ("trained", 1, None)
    summary = await conn.fetchval(
        "SELECT summary FROM optimizations WHERE id = $1", optimization_id
    )
    assert summary["variants_count"] == 3 and summary["exposures"] == 1500
    assert summary["lift_source"] == "measured" and summary["lift"] > 0
    assert 0.9 < summary["confidence"] <= 1.0


async def test_every_training_is_a_new_immutable_version(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    await simulate(conn, org, optimization_id, users=300)
    first = await training.train(wh, org.id, optimization_id, seed=1)
    before = dict(await version_row(conn, optimization_id, 1))
    await simulate(conn, org, optimization_id, users=300, prefix="w", seed=2)
    second = await training.train(wh, org.id, optimization_id)
    assert (first.version, second.version) == (1, 2)
    assert 0 <= second.seed < 2**62 and second.trained_at >= first.trained_at
    assert dict(await version_row(conn, optimization_id, 1)) == before
    after = await version_row(conn, optimization_id, 2)
    assert after["counts"]["matured"] == 600 and before["counts"]["matured"] == 300
    assert (await model_row(conn, optimization_id))["current_version"] == 2


async def test_a_second_trainer_of_the_same_model_gets_a_conflict(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    await simulate(conn, org, optimization_id, users=600)
    outcomes = await asyncio.gather(
        training.train(wh, org.id, optimization_id),
        training.train(wh, org.id, optimization_id),
        return_exceptions=True,
    )
    versions = [o for o in outcomes if isinstance(o, ModelVersion)]
    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(versions) == 1 and len(conflicts) == 1, outcomes
    assert conflicts[0].code == "training_in_progress"
    assert await conn.fetchval("SELECT count(*) FROM model_versions") == 1

    # Another process holding the lock (here: this connection) blocks training the same way.
    assert await models_db.try_training_lock(conn, optimization_id)
    try:
        with pytest.raises(Conflict) as caught:
            await training.train(wh, org.id, optimization_id)
        assert caught.value.code == "training_in_progress"
    finally:
        await models_db.training_unlock(conn, optimization_id)
    assert (await training.train(wh, org.id, optimization_id)).version == 2


async def test_a_failed_training_keeps_the_previous_version_for_serving(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    await simulate(conn, org, optimization_id, users=300)
    await training.train(wh, org.id, optimization_id)
    # An exposure of a variant the design does not have (only possible by hand) breaks the fit.
    await conn.execute(
        "INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, "
        "variant, variant_number, \"timestamp\") VALUES ($1, $2, 'bad', '{}', 99, $3)",
        org.id,
        optimization_id,
        datetime.now(UTC) - timedelta(days=1),
    )
    with pytest.raises(Conflict) as caught:
        await training.train(wh, org.id, optimization_id)
    assert caught.value.code == "training_failed" and caught.value.status == 409
    model = await model_row(conn, optimization_id)
    assert model["status"] == "failed" and "variant number" in model["last_error"]
    assert model["current_version"] == 1
    config = await conn.fetchrow(serving_db.SELECT_CONFIG, optimization_id)
    assert config["model_version"] == 1  # what serving loads


async def test_without_a_metric_training_fails_with_the_reason(
    conn: asyncpg.Connection, wh: Warehouse, org: Org, other_org: Org
) -> None:
    optimization_id = await make_optimization(conn, org, with_metric=False)
    with pytest.raises(Conflict) as caught:
        await training.train(wh, org.id, optimization_id)
    assert caught.value.code == "no_reward_metric"
    model = await model_row(conn, optimization_id)
    assert model["status"] == "failed" and "reward metric" in model["last_error"]
    with pytest.raises(NotFound):
        await training.train(wh, other_org.id, optimization_id)


async def test_an_optimization_without_a_model_row_gets_one(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    await conn.execute("DELETE FROM models WHERE optimization_id = $1", optimization_id)
    await simulate(conn, org, optimization_id, users=100)
    assert (await training.train(wh, org.id, optimization_id)).version == 1


async def test_the_scheduler_trains_live_optimizations_with_new_matured_data(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    live = await make_optimization(conn, org)
    paused = await make_optimization(conn, org, status="paused")
    no_metric = await make_optimization(conn, org, with_metric=False)
    for optimization_id in (live, paused, no_metric):
        await simulate(conn, org, optimization_id, users=100)
    assert await scheduler.due(wh) == [(org.id, live)]
    assert await scheduler.run_once(wh) == 1
    assert await scheduler.run_once(wh) == 0  # nothing new since
    await simulate(conn, org, live, users=10, prefix="new")
    # Pending exposures (window still open) are not new matured data.
    await simulate(conn, org, live, users=5, prefix="young", start=datetime.now(UTC))
    assert await scheduler.run_once(wh) == 1
    assert (await model_row(conn, live))["current_version"] == 2
    assert (await model_row(conn, paused))["current_version"] is None


async def test_the_scheduler_in_the_server_trains_within_an_interval(
    conn: asyncpg.Connection, org: Org, db_url: str
) -> None:
    optimization_id = await make_optimization(conn, org)
    await simulate(conn, org, optimization_id, users=200)
    settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=5, train_interval=0.2)
    # Nothing else trains here, so a version can only come from the scheduler. Wait for it
    # rather than for a count of intervals: on a loaded 2-core machine the first pass (numba
    # loading its cache, the fit) can take many intervals; the bound only stops a hung test.
    async with AsyncTestClient(create_app(settings)):
        deadline = asyncio.get_running_loop().time() + 180
        while (await model_row(conn, optimization_id))["current_version"] != 1:
            assert asyncio.get_running_loop().time() < deadline, "the scheduler never trained"
            await asyncio.sleep(0.1)
    model = await model_row(conn, optimization_id)
    assert model["status"] == "trained" and model["current_version"] == 1


async def test_a_disabled_scheduler_trains_nothing(
    conn: asyncpg.Connection, org: Org, db_url: str
) -> None:
    optimization_id = await make_optimization(conn, org)
    await simulate(conn, org, optimization_id, users=50)
    settings = Settings(database_url=db_url, train_interval=0.05, scheduler=False)
    async with AsyncTestClient(create_app(settings)):
        await asyncio.sleep(0.5)
    assert (await model_row(conn, optimization_id))["current_version"] is None
