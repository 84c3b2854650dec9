"""Guardrails against the real app, database and warehouse: validation on create and PATCH,
evaluation from the guardrail metric's stored cells, auto-pause and its reason, incremental
passes, tenancy."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db.pool import create_pool
from levered.services import scheduler
from levered.services.warehouse import Warehouse
from tests.conftest import Org
from tests.integration.test_training import (
    DESIGN,
    EXPOSURE_COLUMNS,
    REWARD_COLUMNS,
    make_optimization,
)

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Any]
REFUND_SQL = "SELECT anonymous_id, timestamp FROM rewards WHERE name = 'refund'"


async def refund_metric(conn: asyncpg.Connection, org: Org) -> UUID:
    metric_id: UUID = await conn.fetchval(
        "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
        "reward_type) VALUES ($1, 'Refunds', $2, 'anonymous_id', 'timestamp', 'bool') "
        "RETURNING id",
        org.id,
        REFUND_SQL,
    )
    return metric_id


async def traffic(
    conn: asyncpg.Connection,
    org: Org,
    optimization_id: UUID,
    *,
    users: int,
    optimized_rate: float,
    holdout_rate: float,
    prefix: str = "u",
    seed: int = 3,
) -> dict[bool, list[float]]:
    """One exposure per user (every 4th user holdout), matured; a refund with the arm's rate.
    Returns the per-user refund outcomes by holdout flag."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=2)
    exposures, rewards = [], []
    outcomes: dict[bool, list[float]] = {False: [], True: []}
    for i in range(users):
        anonymous_id = f"{prefix}{i}"
        holdout = i % 4 == 0
        number = 1 if holdout else 1 + i % 3
        at = start + timedelta(seconds=20 * i)
        exposures.append(
            (
                org.id,
                optimization_id,
                anonymous_id,
                {"headline": DESIGN[0]["levels"][number - 1]},
                number,
                {"country": "DE"},
                at,
                holdout,
            )
        )
        refunded = rng.random() < (holdout_rate if holdout else optimized_rate)
        if refunded:
            rewards.append((org.id, anonymous_id, "refund", 1.0, at + timedelta(minutes=3)))
        outcomes[holdout].append(1.0 if refunded else 0.0)
    await conn.copy_records_to_table(
        "exposures", schema_name="warehouse", records=exposures, columns=EXPOSURE_COLUMNS
    )
    if rewards:
        await conn.copy_records_to_table(
            "rewards", schema_name="warehouse", records=rewards, columns=REWARD_COLUMNS
        )
    return outcomes


def guardrail(metric_id: UUID, **overrides: Any) -> dict[str, Any]:
    return {
        "metric_id": str(metric_id),
        "direction": "must_not_increase",
        "tolerance_percent": 5,
        **overrides,
    }


async def patch(client: Client, org: Org, optimization_id: UUID, body: Any) -> Any:
    return await client.patch(
        f"/api/v2/optimizations/{optimization_id}", json=body, headers=org.headers
    )


async def evaluate(client: Client, org: Org, optimization_id: UUID) -> dict[str, Any]:
    response = await client.get(
        f"/api/v2/optimizations/{optimization_id}/guardrails", headers=org.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_guardrails_are_validated_on_patch_and_create(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    mine = await refund_metric(conn, org)
    theirs = await refund_metric(conn, other_org)
    cases: list[tuple[Any, str, str]] = [
        ([guardrail(uuid4())], "$.guardrails[0].metric_id", "no metric"),
        ([guardrail(theirs)], "$.guardrails[0].metric_id", "no metric"),
        ([guardrail(mine), guardrail(mine)], "$.guardrails[1].metric_id", "already a guardrail"),
        ([guardrail(mine, direction="up")], "$.guardrails[0].direction", ""),
        ([guardrail(mine, tolerance_percent=0)], "$.guardrails[0].tolerance_percent", ""),
        ([guardrail(mine, extra=1)], "$.guardrails[0].extra", ""),
        ([guardrail(mine)] * 11, "$.guardrails", "at most 10"),
    ]
    for body, path, words in cases:
        response = await patch(client, org, optimization_id, {"guardrails": body})
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert path in error["message"], (path, error)
        assert words in error["message"]
    # Another organization's metric gets the same message as one that exists nowhere.
    nowhere = uuid4()
    unknown = await patch(client, org, optimization_id, {"guardrails": [guardrail(nowhere)]})
    foreign = await patch(client, org, optimization_id, {"guardrails": [guardrail(theirs)]})
    assert unknown.json()["error"]["message"].replace(str(nowhere), "X") == foreign.json()["error"][
        "message"
    ].replace(str(theirs), "X")

    ok = await patch(client, org, optimization_id, {"guardrails": [guardrail(mine)]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["guardrails"] == [
        {
            "metric_id": str(mine),
            "direction": "must_not_increase",
            "tolerance_percent": 5.0,
            "auto_pause": False,
        }
    ]
    shown = await client.get(f"/api/v2/optimizations/{optimization_id}", headers=org.headers)
    assert shown.json()["guardrails"] == ok.json()["guardrails"]
    assert shown.json()["status_reason"] is None

    reward_metric = await conn.fetchval(
        "SELECT reward_metric_id FROM optimizations WHERE id = $1", optimization_id
    )
    create = {
        "name": "with guardrails",
        "design_factors": DESIGN,
        "reward_metric_id": str(reward_metric),
        "guardrails": [guardrail(mine, direction="must_not_decrease", auto_pause=True)],
    }
    created = await client.post("/api/v2/optimizations", json=create, headers=org.headers)
    assert created.status_code == 201, created.text
    assert created.json()["guardrails"][0]["direction"] == "must_not_decrease"
    assert created.json()["guardrails"][0]["auto_pause"] is True
    bad = await client.post(
        "/api/v2/optimizations",
        json={**create, "guardrails": [guardrail(theirs)]},
        headers=org.headers,
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["path"] == "$.guardrails[0].metric_id"


async def test_a_planted_breach_is_violated_and_auto_pauses(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    refunds = await refund_metric(conn, org)
    outcomes = await traffic(
        conn, org, optimization_id, users=4000, optimized_rate=0.20, holdout_rate=0.10
    )
    response = await patch(
        client, org, optimization_id, {"guardrails": [guardrail(refunds, auto_pause=True)]}
    )
    assert response.status_code == 200

    body = await evaluate(client, org, optimization_id)
    (g,) = body["guardrails"]
    assert g["status"] == "violated", g
    assert g["metric_name"] == "Refunds" and g["reward_type"] == "bool"
    assert g["optimized_users"] == len(outcomes[False]) == 3000
    assert g["holdout_users"] == len(outcomes[True]) == 1000
    assert math.isclose(g["optimized_rate"], sum(outcomes[False]) / 3000)
    assert math.isclose(g["holdout_rate"], sum(outcomes[True]) / 1000)
    assert g["ci"][0] > 5 and g["change_percent"] > g["ci"][0]
    assert g["data_through"] is not None
    assert body["paused"] is True and body["status"] == "paused"
    reason = body["status_reason"]
    assert reason["code"] == "guardrail_violated" and reason["metric_id"] == str(refunds)
    assert "Refunds" in reason["message"] and reason["details"]["tolerance_percent"] == 5

    shown = (
        await client.get(f"/api/v2/optimizations/{optimization_id}", headers=org.headers)
    ).json()
    assert shown["status"] == "paused" and shown["status_reason"]["code"] == "guardrail_violated"
    # Evaluating a paused optimization again does not pause (or record) anything new.
    again = await evaluate(client, org, optimization_id)
    assert again["paused"] is False and again["status"] == "paused"
    assert again["status_reason"] == reason
    # Resuming through the API clears the reason.
    resumed = await patch(client, org, optimization_id, {"status": "live"})
    assert resumed.status_code == 200 and resumed.json()["status_reason"] is None


async def test_no_breach_is_not_violated_and_without_auto_pause_nothing_pauses(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    refunds = await refund_metric(conn, org)
    await traffic(conn, org, optimization_id, users=4000, optimized_rate=0.10, holdout_rate=0.10)
    await patch(
        client,
        org,
        optimization_id,
        {
            "guardrails": [
                guardrail(refunds, tolerance_percent=60, auto_pause=True),
                # A decrease of refunds is not what this guardrail watches.
            ]
        },
    )
    (g,) = (await evaluate(client, org, optimization_id))["guardrails"]
    assert g["status"] == "ok", g  # a 60 % tolerance is decided at these counts
    assert g["ci"][1] <= 60

    # A real breach without auto_pause: violated, but the optimization stays live.
    breach = await make_optimization(conn, org)
    await traffic(conn, org, breach, users=4000, optimized_rate=0.25, holdout_rate=0.10, prefix="b")
    await patch(client, org, breach, {"guardrails": [guardrail(refunds)]})
    report = await evaluate(client, org, breach)
    assert report["guardrails"][0]["status"] == "violated"
    assert report["paused"] is False and report["status"] == "live"


async def test_too_few_users_is_pending_and_new_data_is_counted_incrementally(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    refunds = await refund_metric(conn, org)
    await traffic(conn, org, optimization_id, users=200, optimized_rate=0.3, holdout_rate=0.1)
    await patch(client, org, optimization_id, {"guardrails": [guardrail(refunds)]})
    (g,) = (await evaluate(client, org, optimization_id))["guardrails"]
    assert g["status"] == "pending" and "not enough data" in g["reason"]
    assert (g["optimized_users"], g["holdout_users"]) == (150, 50)
    assert g["ci"] is None

    more = await traffic(
        conn, org, optimization_id, users=4000, optimized_rate=0.3, holdout_rate=0.1, prefix="n"
    )
    (g,) = (await evaluate(client, org, optimization_id))["guardrails"]
    assert (g["optimized_users"], g["holdout_users"]) == (150 + 3000, 50 + 1000)
    assert g["status"] == "violated"
    passes = await conn.fetchval(
        "SELECT passes FROM guardrail_state WHERE optimization_id = $1", optimization_id
    )
    assert passes == 2  # extended, not rebuilt: the second pass read the late exposures
    assert sum(more[False]) > 0


async def test_a_must_not_decrease_guardrail_and_a_deleted_metric(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    refunds = await refund_metric(conn, org)
    await traffic(conn, org, optimization_id, users=4000, optimized_rate=0.05, holdout_rate=0.15)
    await patch(
        client,
        org,
        optimization_id,
        {"guardrails": [guardrail(refunds, direction="must_not_decrease", tolerance_percent=10)]},
    )
    (g,) = (await evaluate(client, org, optimization_id))["guardrails"]
    assert g["status"] == "violated" and g["ci"][1] < -10

    await conn.execute("DELETE FROM metrics WHERE id = $1", refunds)
    (g,) = (await evaluate(client, org, optimization_id))["guardrails"]
    assert g["status"] == "pending" and "no longer exists" in g["reason"]
    assert g["metric_name"] is None


async def test_guardrails_of_another_organization_are_not_found(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    refunds = await refund_metric(conn, org)
    await traffic(conn, org, optimization_id, users=400, optimized_rate=0.5, holdout_rate=0.1)
    await patch(client, org, optimization_id, {"guardrails": [guardrail(refunds, auto_pause=True)]})
    response = await client.get(
        f"/api/v2/optimizations/{optimization_id}/guardrails", headers=other_org.headers
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    # The attacker's request changed nothing: no pass ran, the optimization is still live.
    assert await conn.fetchval("SELECT count(*) FROM guardrail_state") == 0
    status = await conn.fetchval("SELECT status FROM optimizations WHERE id = $1", optimization_id)
    assert status == "live"
    # Their own optimization cannot name our metric as a guardrail either.
    theirs = await make_optimization(conn, other_org)
    response = await patch(client, other_org, theirs, {"guardrails": [guardrail(refunds)]})
    assert response.status_code == 400


async def test_the_scheduler_pauses_on_a_violated_auto_pause_guardrail(
    client: Client, conn: asyncpg.Connection, org: Org, db_url: str
) -> None:
    optimization_id = await make_optimization(conn, org)
    watched = await make_optimization(conn, org)  # violated too, but no auto_pause
    refunds = await refund_metric(conn, org)
    await traffic(conn, org, optimization_id, users=4000, optimized_rate=0.25, holdout_rate=0.1)
    await traffic(conn, org, watched, users=4000, optimized_rate=0.25, holdout_rate=0.1, prefix="w")
    await patch(client, org, optimization_id, {"guardrails": [guardrail(refunds, auto_pause=True)]})
    await patch(client, org, watched, {"guardrails": [guardrail(refunds)]})
    pool = await create_pool(db_url, min_size=1, max_size=4)
    try:
        await scheduler.run_once(Warehouse(pool))
    finally:
        await pool.close()
    row = await conn.fetchrow(
        "SELECT status, status_reason FROM optimizations WHERE id = $1", optimization_id
    )
    assert row["status"] == "paused" and row["status_reason"]["code"] == "guardrail_violated"
    assert await conn.fetchval("SELECT status FROM optimizations WHERE id = $1", watched) == "live"
