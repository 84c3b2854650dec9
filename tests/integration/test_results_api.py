"""``GET /api/v2/optimizations/{id}/results`` against the real app, database and warehouse."""

from __future__ import annotations

import math
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np
from litestar.testing import AsyncTestClient

from tests.conftest import Org
from tests.integration.test_training import Traffic, make_optimization, simulate

Client = AsyncTestClient[Any]


def url(optimization_id: UUID, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v2/optimizations/{optimization_id}/results" + (f"?{query}" if query else "")


def hand_lift(traffic: Traffic) -> tuple[float, list[float], float]:
    """Lift %, its log-ratio delta-method 95 % CI and the matching Wald p-value, from the raw
    user outcomes."""
    o = np.array(list(traffic.optimized.values()))
    h = np.array(list(traffic.holdout.values()))
    mo, mh = o.mean(), h.mean()
    vo, vh = o.var(ddof=1) / o.size, h.var(ddof=1) / h.size
    grad = np.array([1 / mo, -1 / mh])  # ∂ log(mo/mh)
    se = math.sqrt(grad @ np.diag([vo, vh]) @ grad)
    lift = 100 * (mo / mh - 1)
    z = math.log(mo / mh) / se
    p = 2 * (1 - 0.5 * (1 + math.erf(abs(z) / math.sqrt(2))))
    z95 = 1.959963984540054
    ratio = mo / mh
    return (
        lift,
        [100 * (ratio * math.exp(-z95 * se) - 1), 100 * (ratio * math.exp(z95 * se) - 1)],
        p,
    )


async def train(client: Client, conn: asyncpg.Connection, org: Org, optimization_id: UUID) -> None:
    model_id = await conn.fetchval(
        "SELECT id FROM models WHERE optimization_id = $1", optimization_id
    )
    response = await client.post(f"/api/v2/models/{model_id}/train?seed=5", headers=org.headers)
    assert response.status_code == 201, response.text


async def test_results_of_a_trained_bool_optimization(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    traffic = await simulate(conn, org, optimization_id, users=3000, holdout_every=5)
    await train(client, conn, org, optimization_id)
    response = await client.get(url(optimization_id), headers=org.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reward_type"] == "bool" and body["note"] is None
    assert body["variants_total"] == 3 and len(body["variants"]) == 3
    variants = {v["number"]: v for v in body["variants"]}
    assert body["variants"][0]["number"] == 3  # highest weight first: the planted best
    for number, v in variants.items():
        assert v["exposures"] == traffic.exposures[number]
        assert v["variant_key"] == str(number - 1)
        assert v["reward_sum"] is None and v["conversions"] <= v["exposures"]
        assert v["rate"] == v["conversions"] / v["exposures"]
        assert v["expected_reward"]["lo"] <= v["expected_reward"]["mean"]
        assert v["expected_reward"]["mean"] <= v["expected_reward"]["hi"]
        assert abs(v["weight"] - v["prob_best"] * 0.9) < 1e-12
    assert sum(traffic.holdout.values()) + sum(traffic.optimized.values()) == sum(
        v["conversions"] for v in variants.values()
    )
    assert variants[3]["prob_best"] > 0.9

    lift = body["measured_lift"]
    expected_lift, expected_ci, expected_p = hand_lift(traffic)
    assert lift["optimized_users"] == len(traffic.optimized)
    assert lift["holdout_users"] == len(traffic.holdout)
    assert math.isclose(
        lift["optimized_rate"], sum(traffic.optimized.values()) / len(traffic.optimized)
    )
    assert math.isclose(lift["lift_percent"], expected_lift, rel_tol=1e-9)
    assert lift["lift_percent"] > 0
    assert math.isclose(lift["ci"][0], expected_ci[0], rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(lift["ci"][1], expected_ci[1], rel_tol=1e-9)
    # Log-ratio interval: symmetric around the log ratio, not around the lift.
    ratio = 1 + lift["lift_percent"] / 100
    lo, hi = 1 + lift["ci"][0] / 100, 1 + lift["ci"][1] / 100
    assert math.isclose(math.log(hi / ratio), math.log(ratio / lo), rel_tol=1e-9)
    assert math.isclose(lift["p_value"], expected_p, rel_tol=1e-6, abs_tol=1e-12)

    modeled = body["modeled"]
    assert modeled["estimated_improvement_percent"]["mean"] > 0
    assert modeled["best_vs_baseline_percent"]["lo"] > 0
    assert 0 < modeled["estimated_progress"] <= 1
    (factor,) = body["factor_importance"]
    assert factor["name"] == "headline" and factor["q1"] <= factor["mean"] <= 1.0
    assert [lv["level"] for lv in factor["levels"]] == ["a", "b", "c"]
    assert factor["levels"][0]["effect"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0}
    assert factor["levels"][2]["effect"]["lo"] > 0
    assert body["interaction_importance"]["pairs"] == []
    assert [c["name"] for c in body["context_importance"]] == ["country"]

    days = body["time_series"]
    assert sum(d["exposures"] for d in days) == 3000
    assert sum(d["holdout"]["exposures"] for d in days) == len(traffic.holdout)
    assert sum(sum(v["exposures"] for v in d["variants"]) for d in days) == len(traffic.optimized)
    assert all(date.fromisoformat(d["date"]) for d in days)
    assert body["model"]["version"] == 1 and body["model"]["pending"] == 0

    top = (await client.get(url(optimization_id, limit=1), headers=org.headers)).json()
    assert [v["number"] for v in top["variants"]] == [3] and top["variants_total"] == 3


async def test_numeric_results_report_reward_sums(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org, reward_type="numeric", model_type="mab")
    traffic = await simulate(conn, org, optimization_id, users=600, reward_type="numeric")
    await train(client, conn, org, optimization_id)
    body = (await client.get(url(optimization_id), headers=org.headers)).json()
    total = sum(traffic.optimized.values()) + sum(traffic.holdout.values())
    assert all(v["conversions"] is None for v in body["variants"])
    assert math.isclose(sum(v["reward_sum"] for v in body["variants"]), total, rel_tol=1e-9)
    assert body["context_importance"] == []  # mab


async def test_no_interval_or_p_value_below_100_users_per_arm(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    traffic = await simulate(conn, org, optimization_id, users=900, holdout_every=10)
    assert len(traffic.holdout) == 90
    body = (await client.get(url(optimization_id), headers=org.headers)).json()
    lift = body["measured_lift"]
    assert lift["holdout_users"] == 90 and lift["optimized_users"] == 810
    assert lift["ci"] is None and lift["p_value"] is None
    assert lift["lift_percent"] is not None


async def test_untrained_results_have_counts_and_a_note(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    traffic = await simulate(conn, org, optimization_id, users=300)
    body = (await client.get(url(optimization_id), headers=org.headers)).json()
    assert "not been trained" in body["note"]
    assert [v["number"] for v in body["variants"]] == [1, 2, 3]
    for v in body["variants"]:
        assert v["exposures"] == traffic.exposures[v["number"]]
        assert v["expected_reward"] is None and v["prob_best"] is None and v["weight"] is None
    assert body["modeled"] is None and body["factor_importance"] == []
    assert body["model"]["version"] is None and body["model"]["status"] == "untrained"
    assert sum(d["exposures"] for d in body["time_series"]) == 300

    bare = await make_optimization(conn, org, with_metric=False)
    body = (await client.get(url(bare), headers=org.headers)).json()
    assert "no reward metric" in body["note"] and body["reward_type"] is None
    assert body["time_series"] == [] and body["measured_lift"]["optimized_users"] == 0

    await conn.execute(
        "UPDATE metrics SET sql = 'SELECT nothing FROM nowhere' WHERE organization_id = $1",
        org.id,
    )
    response = await client.get(url(optimization_id), headers=org.headers)
    assert response.status_code == 200
    assert "metric_failed" in response.json()["note"]
    assert response.json()["variants"][0]["exposures"] == 0


async def test_another_organizations_results_are_not_found(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    response = await client.get(url(optimization_id), headers=other_org.headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert (await client.get(url(optimization_id))).status_code == 401
    for limit in (0, 10001, "x"):
        response = await client.get(url(optimization_id, limit=limit), headers=org.headers)
        assert response.status_code == 400
