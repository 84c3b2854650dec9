"""``GET /api/v2/optimizations/{id}/progress`` and ``.../lift-history`` against the real app,
database and warehouse: figures checked against the results document and hand computations."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import Org
from tests.integration.test_results_api import train
from tests.integration.test_training import make_optimization, simulate

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Any]
Z95 = 1.959963984540054


async def get(client: Client, org: Org, optimization_id: UUID, what: str, **params: Any) -> Any:
    response = await client.get(
        f"/api/v2/optimizations/{optimization_id}/{what}", params=params, headers=org.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_progress_untrained_then_trained(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    start = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    traffic = await simulate(conn, org, optimization_id, users=3000, holdout_every=5, start=start)

    before = await get(client, org, optimization_id, "progress")
    assert before["leader"] is None and before["expected_days_to_decision"] is None
    assert "not trained" in before["method"] and before["decided"] is False
    assert before["started_at"].startswith(start.date().isoformat())
    assert 3.0 <= before["days_running"] <= 4.0
    assert before["optimized_users"] == len(traffic.optimized)
    assert before["holdout_users"] == len(traffic.holdout)

    await train(client, conn, org, optimization_id)
    results = await get(client, org, optimization_id, "results")
    variants = sorted(results["variants"], key=lambda v: -v["prob_best"])
    body = await get(client, org, optimization_id, "progress", threshold=0.999)
    assert body["leader"] == variants[0]["number"] == 3  # the planted best
    assert body["leader_prob_best"] == variants[0]["prob_best"]
    assert [a["number"] for a in body["arms"]] == [v["number"] for v in variants]
    assert {a["number"]: a["exposures"] for a in body["arms"]} == traffic.exposures
    assert body["threshold"] == 0.999
    assert math.isclose(body["certainty"], min(1.0, variants[0]["prob_best"] / 0.999))
    # The daily rate: every exposure is within the last 7 days; younger than 7 days, the span
    # is the time running.
    rate = 3000 / body["days_running"]
    assert math.isclose(body["daily_observations"], rate)
    assert body["decided"] is True and body["expected_days_to_decision"] == 0.0
    easy = await get(client, org, optimization_id, "progress", threshold=0.51, limit=1)
    assert easy["decided"] is True and easy["expected_days_to_decision"] == 0.0
    assert len(easy["arms"]) == 1


async def test_no_estimate_before_the_first_matured_observation(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)  # conversion window 1 h
    await simulate(
        conn, org, optimization_id, users=200, start=datetime.now(UTC) - timedelta(minutes=10)
    )
    await train(client, conn, org, optimization_id)  # everything is still pending
    body = await get(client, org, optimization_id, "progress")
    assert body["leader"] is not None and sum(a["exposures"] for a in body["arms"]) == 0
    # It used to scale "0 observations" by some factor: 0 more needed, "decision in 0 hours".
    assert body["observations_to_decision"] is None
    assert body["expected_days_to_decision"] is None
    assert "no matured observations yet" in body["method"]


async def test_progress_bad_parameters_and_tenancy(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    for params, name in (({"threshold": 1.0}, "threshold"), ({"limit": 0}, "limit")):
        response = await client.get(
            f"/api/v2/optimizations/{optimization_id}/progress",
            params=params,
            headers=org.headers,
        )
        assert response.status_code == 400, response.text
        assert name in response.text
    for what in ("progress", "lift-history"):
        response = await client.get(
            f"/api/v2/optimizations/{optimization_id}/{what}", headers=other_org.headers
        )
        assert response.status_code == 404, what
    assert await conn.fetchval("SELECT count(*) FROM observation_state") == 0


async def test_lift_history_daily_and_cumulative(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    day0 = (datetime.now(UTC) - timedelta(days=5)).replace(hour=1, minute=0, second=0)
    day0 = day0.replace(microsecond=0)
    first = await simulate(conn, org, optimization_id, users=1200, start=day0, holdout_every=4)
    # The same users again two days later: the cumulative lift keeps each user once.
    again = await simulate(
        conn,
        org,
        optimization_id,
        users=1200,
        start=day0 + timedelta(days=2),
        holdout_every=4,
        seed=9,
    )
    body = await get(client, org, optimization_id, "lift-history")
    assert body["reward_type"] == "bool" and body["note"] is None
    days = [p["date"] for p in body["points"]]
    assert days == [day0.date().isoformat(), (day0 + timedelta(days=2)).date().isoformat()]

    for point, traffic in zip(body["points"], (first, again), strict=True):
        daily = point["daily"]
        assert daily["optimized_users"] == len(traffic.optimized) == 900
        assert daily["holdout_users"] == len(traffic.holdout) == 300
        assert math.isclose(daily["optimized_rate"], sum(traffic.optimized.values()) / 900)
        assert math.isclose(daily["holdout_rate"], sum(traffic.holdout.values()) / 300)
        assert daily["ci"] is not None

    # Cumulative: a user's outcome is 1 if they converted on either day.
    per_user: dict[tuple[bool, str], float] = defaultdict(float)
    for held, traffic in ((False, first.optimized), (True, first.holdout)):
        for user, outcome in traffic.items():
            per_user[(held, user)] = max(per_user[(held, user)], outcome)
    for held, traffic in ((False, again.optimized), (True, again.holdout)):
        for user, outcome in traffic.items():
            per_user[(held, user)] = max(per_user[(held, user)], outcome)
    last = body["points"][-1]["cumulative"]
    optimized = [o for (held, _), o in per_user.items() if not held]
    assert last["optimized_users"] == len(optimized) == 900
    assert math.isclose(last["optimized_rate"], sum(optimized) / 900)
    assert body["points"][0]["cumulative"] == body["points"][0]["daily"]
    # The last cumulative point is the results' measured lift (kept incrementally elsewhere).
    results = await get(client, org, optimization_id, "results")
    lift = results["measured_lift"]
    for key in ("optimized_users", "holdout_users"):
        assert last[key] == lift[key]
    for key in ("optimized_rate", "holdout_rate", "lift_percent", "p_value"):
        assert math.isclose(last[key], lift[key], rel_tol=1e-9)
    assert all(
        math.isclose(a, b, rel_tol=1e-9) for a, b in zip(last["ci"], lift["ci"], strict=True)
    )
    # No model version yet: no modeled lift on any day.
    assert [p["modeled"] for p in body["points"]] == [None, None]
    # Two versions, dated (as if trained then) on day 0 and day 1: each day shows the last one
    # trained by its end; day 2 still has version 2's estimate.
    for version, at in ((1, day0 + timedelta(hours=12)), (2, day0 + timedelta(days=1, hours=3))):
        await train(client, conn, org, optimization_id)
        await conn.execute(
            "UPDATE model_versions SET trained_at = $2 WHERE version = $1 AND model_id = "
            "(SELECT id FROM models WHERE optimization_id = $3)",
            version,
            at,
            optimization_id,
        )
    body = await get(client, org, optimization_id, "lift-history")
    modeled = [p["modeled"] for p in body["points"]]
    assert [m["version"] for m in modeled] == [1, 2]
    stored = await conn.fetchval(
        "SELECT counts -> 'modeled_lift' FROM model_versions WHERE version = 2 AND model_id = "
        "(SELECT id FROM models WHERE optimization_id = $1)",
        optimization_id,
    )
    assert modeled[1]["percent"] == stored["percent"] and modeled[1]["ci"] == stored["ci"]
    assert modeled[1]["ci"][0] < modeled[1]["percent"] < modeled[1]["ci"][1]
    # The results estimate the same quantity from their own posterior draws.
    results = await get(client, org, optimization_id, "results")
    improvement = results["modeled"]["estimated_improvement_percent"]
    assert math.isclose(modeled[1]["percent"], improvement["mean"], rel_tol=0.02)


async def test_lift_history_without_a_metric_has_a_note(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org, with_metric=False)
    body = await get(client, org, optimization_id, "lift-history")
    assert body["points"] == [] and "no reward metric" in body["note"]


async def test_progress_estimates_the_time_to_decision_of_a_close_race(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org, model_type="mab")
    await simulate(conn, org, optimization_id, users=3000, rates=(0.10, 0.11, 0.13))
    await train(client, conn, org, optimization_id)
    results = await get(client, org, optimization_id, "results")
    body = await get(client, org, optimization_id, "progress", threshold=0.999)
    assert body["decided"] is False and "z-scaling" in body["method"], body
    variants = sorted(results["variants"], key=lambda v: (-v["prob_best"], v["number"]))
    assert body["leader"] == variants[0]["number"]
    # Recompute the z-scaling estimate from the results document.
    lead, second = (v["expected_reward"] for v in variants[:2])
    sd = math.hypot(
        (lead["hi"] - lead["lo"]) / (2 * Z95), (second["hi"] - second["lo"]) / (2 * Z95)
    )
    factor = (NormalDist().inv_cdf(0.999) / ((lead["mean"] - second["mean"]) / sd)) ** 2
    n = sum(v["exposures"] for v in results["variants"])
    expected = max(0, math.ceil(n * (factor - 1)))
    assert body["observations_to_decision"] == expected > 0
    rate = 3000 / body["days_running"]
    assert math.isclose(body["expected_days_to_decision"], expected / rate)
    # A looser threshold is reached sooner.
    looser = await get(client, org, optimization_id, "progress", threshold=0.9)
    assert looser["decided"] or looser["observations_to_decision"] < expected
