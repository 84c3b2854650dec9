"""Training on stored cells through the API: late rewards with the scheduler on, training
windows (last N days, decay), and rebuilds (forced, and on a metric change)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.server.app import create_app
from levered.services import scheduler
from levered.services.warehouse import Warehouse
from levered.settings import Settings
from tests.conftest import Org
from tests.integration.test_training import make_optimization, model_row, simulate, wh

__all__ = ["wh"]  # the fixture, imported for pytest

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Any]


async def _model_id(conn: asyncpg.Connection, optimization_id: UUID) -> UUID:
    return (await model_row(conn, optimization_id))["id"]  # type: ignore[no-any-return]


async def _current_counts(conn: asyncpg.Connection, optimization_id: UUID) -> dict[str, Any]:
    counts: dict[str, Any] = await conn.fetchval(
        "SELECT mv.counts FROM models m JOIN model_versions mv ON mv.model_id = m.id "
        "AND mv.version = m.current_version WHERE m.optimization_id = $1 AND m.deleted_at IS NULL",
        optimization_id,
    )
    return counts


async def _wait_for_version(conn: asyncpg.Connection, optimization_id: UUID, version: int) -> None:
    for _ in range(300):
        if (await model_row(conn, optimization_id))["current_version"] == version:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"version {version} was never trained")


async def test_a_late_reward_sent_through_the_api_is_trained_on_by_the_scheduler(
    conn: asyncpg.Connection, org: Org, db_url: str
) -> None:
    """Exposures two days old are trained on; then a reward for one of them arrives late
    (its exposure matured long ago): the scheduler notices it and the next version counts it."""
    optimization_id = await make_optimization(conn, org)
    at = datetime.now(UTC) - timedelta(days=2)
    exposures = [
        {
            "anonymous_id": f"late-{i}",
            "optimization_id": str(optimization_id),
            "variant": {"headline": "b"},
            "timestamp": (at + timedelta(minutes=i)).isoformat(),
            "idempotency_key": f"x-{i}",
        }
        for i in range(20)
    ]
    settings = Settings(database_url=db_url, pool_min_size=1, pool_max_size=5, train_interval=0.2)
    async with AsyncTestClient(create_app(settings)) as client:
        sent = await client.post(
            "/api/v2/ingest/exposures", json={"events": exposures}, headers=org.headers
        )
        assert sent.status_code == 200, sent.text
        await _wait_for_version(conn, optimization_id, 1)
        first = await _current_counts(conn, optimization_id)
        assert first["matured"] == 20 and first["reward_sum"] == 0
        reward = {
            "anonymous_id": "late-3",
            "name": "purchase",
            "timestamp": (at + timedelta(minutes=3, seconds=30)).isoformat(),
            "idempotency_key": "r-late-3",
        }
        sent = await client.post(
            "/api/v2/ingest/rewards", json={"events": [reward]}, headers=org.headers
        )
        assert sent.status_code == 200, sent.text
        await _wait_for_version(conn, optimization_id, 2)
        second = await _current_counts(conn, optimization_id)
        assert second["matured"] == 20 and second["reward_sum"] == 1
        results = (
            await client.get(
                f"/api/v2/optimizations/{optimization_id}/results", headers=org.headers
            )
        ).json()
        assert results["training_window"] == {"type": "all"}
        assert datetime.fromisoformat(results["data_through"]) > at
        await asyncio.sleep(1.0)  # several intervals: nothing new, no version 3
        assert (await model_row(conn, optimization_id))["current_version"] == 2


async def test_training_windows_last_days_and_decay(
    conn: asyncpg.Connection, client: Client, org: Org
) -> None:
    """Old traffic (10 days ago) and recent traffic (2 days ago): a 5-day window trains on the
    recent only, a 1-day half-life weighs the old by 0.5^8 ≈ 0.004."""
    optimization_id = await make_optimization(conn, org)
    now = datetime.now(UTC)
    await simulate(
        conn, org, optimization_id, users=90, prefix="old", start=now - timedelta(days=10)
    )
    await simulate(
        conn, org, optimization_id, users=60, prefix="new", start=now - timedelta(days=2)
    )
    model_id = await _model_id(conn, optimization_id)
    path = f"/api/v2/optimizations/{optimization_id}"

    async def train() -> dict[str, Any]:
        response = await client.post(f"/api/v2/models/{model_id}/train", headers=org.headers)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    everything = await train()
    assert sum(everything["counts"]["exposures"].values()) == 150
    assert everything["counts"]["window"] == {"type": "all"}

    patched = await client.patch(
        path, json={"training_window": {"type": "days", "days": 5}}, headers=org.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["training_window"] == {"type": "days", "days": 5.0}
    recent = await train()
    assert sum(recent["counts"]["exposures"].values()) == 60
    assert recent["counts"]["matured"] == 150  # what exists; the window is what is fitted
    window_start = datetime.fromisoformat(recent["window_start"])
    assert window_start == datetime.fromisoformat(recent["window_end"]) - timedelta(days=5)

    await client.patch(
        path, json={"training_window": {"type": "decay", "half_life_days": 1}}, headers=org.headers
    )
    decayed = await train()
    weighted = sum(decayed["counts"]["exposures"].values())
    assert 60 * 0.5**2.2 < weighted < 60 * 0.5**1.9 + 90 * 0.01
    assert decayed["counts"]["window"] == {"type": "decay", "half_life_days": 1.0}
    assert decayed["window_start"] is None

    for bad, where in (
        ({"type": "days"}, "$.training_window"),
        ({"type": "days", "days": 0}, "$.training_window.days"),
        ({"type": "weekly"}, "$.training_window"),
        ({"type": "decay", "half_life_days": "soon"}, "$.training_window.half_life_days"),
    ):
        refused = await client.patch(path, json={"training_window": bad}, headers=org.headers)
        assert refused.status_code == 400, bad
        assert where in refused.text


async def test_rebuilds_forced_and_on_a_metric_change(
    conn: asyncpg.Connection, client: Client, wh: Warehouse, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    await simulate(conn, org, optimization_id, users=50)
    model_id = await _model_id(conn, optimization_id)
    train = f"/api/v2/models/{model_id}/train"
    assert (await client.post(train, headers=org.headers)).status_code == 201
    first = await conn.fetchrow(
        "SELECT rebuilt_at, passes, fingerprint FROM observation_state WHERE optimization_id = $1",
        optimization_id,
    )
    assert (await client.post(f"{train}?rebuild=true", headers=org.headers)).status_code == 201
    forced = await conn.fetchrow(
        "SELECT rebuilt_at, passes FROM observation_state WHERE optimization_id = $1",
        optimization_id,
    )
    assert forced["rebuilt_at"] > first["rebuilt_at"] and forced["passes"] == first["passes"] + 1
    assert await scheduler.due(wh) == []

    # Another metric (every purchase counts 2, numeric): the cells' fingerprint no longer
    # matches, so the scheduler retrains and the pass rebuilds with the new metric.
    other = await conn.fetchval(
        "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
        "value_col, reward_type) VALUES ($1, 'Doubled', $2, 'anonymous_id', 'timestamp', "
        "'value', 'numeric') RETURNING id",
        org.id,
        "SELECT anonymous_id, timestamp, 2 * value AS value FROM rewards "
        "WHERE name = 'purchase' AND timestamp >= @start_date",
    )
    before = await _current_counts(conn, optimization_id)
    patched = await client.patch(
        f"/api/v2/optimizations/{optimization_id}",
        json={"reward_metric_id": str(other)},
        headers=org.headers,
    )
    assert patched.status_code == 200, patched.text
    assert await scheduler.due(wh) == [(org.id, optimization_id)]
    assert await scheduler.run_once(wh) == 1
    after = await _current_counts(conn, optimization_id)
    assert after["reward_sum"] == pytest.approx(2 * before["reward_sum"])
    rebuilt = await conn.fetchrow(
        "SELECT rebuilt_at, fingerprint FROM observation_state WHERE optimization_id = $1",
        optimization_id,
    )
    assert rebuilt["fingerprint"] != first["fingerprint"]
    assert rebuilt["rebuilt_at"] > forced["rebuilt_at"]
