"""``GET /api/v2/optimizations/{id}/report-data``: one document consistent with the endpoints
it gathers (results, guardrails, progress, lift history), and tenancy."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import Org
from tests.integration.test_guardrails import guardrail, patch, refund_metric, traffic
from tests.integration.test_results_api import train
from tests.integration.test_training import make_optimization

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Any]


async def test_report_data_gathers_every_surface(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    refunds = await refund_metric(conn, org)
    await traffic(conn, org, optimization_id, users=4000, optimized_rate=0.2, holdout_rate=0.1)
    await patch(client, org, optimization_id, {"guardrails": [guardrail(refunds)]})
    await train(client, conn, org, optimization_id)

    url = f"/api/v2/optimizations/{optimization_id}/report-data"
    response = await client.get(url, params={"limit": 2}, headers=org.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["optimization_id"] == str(optimization_id) and body["name"] == "Hero"
    assert body["status"] == "live" and body["meta"]["request_id"]
    assert set(body) >= {"results", "guardrails", "progress", "lift_history", "generated_at"}

    results = body["results"]
    assert len(results["variants"]) == 2 and results["variants_total"] == 3
    (g,) = body["guardrails"]["guardrails"]
    assert g["status"] == "violated" and body["guardrails"]["paused"] is False
    progress = body["progress"]
    assert progress["leader"] == results["variants"][0]["number"]
    assert progress["optimized_users"] == results["measured_lift"]["optimized_users"] == 3000
    last = body["lift_history"]["points"][-1]["cumulative"]
    for key in ("optimized_users", "holdout_users", "optimized_rate", "holdout_rate"):
        assert last[key] == pytest.approx(results["measured_lift"][key], rel=1e-9)

    alone = await client.get(
        f"/api/v2/optimizations/{optimization_id}/guardrails", headers=org.headers
    )
    assert alone.json()["guardrails"][0]["change_percent"] == pytest.approx(g["change_percent"])

    bad = await client.get(url, params={"threshold": 0.2}, headers=org.headers)
    assert bad.status_code == 400 and "threshold" in bad.text
    foreign = await client.get(url, headers=other_org.headers)
    assert foreign.status_code == 404
