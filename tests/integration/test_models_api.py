"""``/api/v2/models`` against the real app and database: list, show, state, train, delete."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import asyncpg
from litestar.testing import AsyncTestClient

from tests.conftest import Org
from tests.integration.test_training import make_optimization, simulate

Client = AsyncTestClient[Any]


async def model_id_of(conn: asyncpg.Connection, optimization_id: UUID) -> UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT id FROM models WHERE optimization_id = $1 AND deleted_at IS NULL", optimization_id
    )


async def test_list_show_state_train_and_delete(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org, holdout_percentage=20)
    archived = await make_optimization(conn, org, status="archived")
    await simulate(conn, org, optimization_id, users=900)
    model_id = await model_id_of(conn, optimization_id)

    body = (await client.get("/api/v2/models", headers=org.headers)).json()
    assert [m["id"] for m in body["models"]] == [str(model_id)]
    assert body["models"][0]["optimization_id"] == str(optimization_id)
    assert body["models"][0]["optimization_name"] == "Hero"
    assert body["models"][0]["status"] == "untrained"
    assert body["models"][0]["current_version"] is None
    assert body["meta"]["organization_id"] == str(org.id)
    body = (
        await client.get("/api/v2/models?include_archived=true&limit=5", headers=org.headers)
    ).json()
    assert {m["optimization_id"] for m in body["models"]} == {str(optimization_id), str(archived)}
    assert (await client.get("/api/v2/models?limit=0", headers=org.headers)).status_code == 400

    state = (await client.get(f"/api/v2/models/{model_id}/state", headers=org.headers)).json()
    assert state["version"] is None and "not been trained" in state["note"]
    assert [v["number"] for v in state["variants"]] == [1, 2, 3]
    assert all(v["weight"] == 0.8 / 3 and v["prob_best"] is None for v in state["variants"])
    assert state["variants_total"] == 3 and state["holdout_percentage"] == 20

    response = await client.post(f"/api/v2/models/{model_id}/train?seed=7", headers=org.headers)
    assert response.status_code == 201, response.text
    trained = response.json()
    assert (trained["version"], trained["seed"], trained["kind"]) == (1, 7, "laplace_logistic")
    assert trained["counts"]["matured"] == 900 and trained["model_id"] == str(model_id)

    shown = (await client.get(f"/api/v2/models/{model_id}", headers=org.headers)).json()
    assert (shown["status"], shown["current_version"]) == ("trained", 1)
    assert shown["trained_at"] == trained["trained_at"] and shown["last_error"] is None

    state = (await client.get(f"/api/v2/models/{model_id}/state", headers=org.headers)).json()
    assert state["version"] == 1 and state["seed"] == 7 and state["note"] is None
    assert state["counts"]["matured"] == 900 and state["kind"] == "laplace_logistic"
    assert state["variants"][0]["number"] == 3  # the planted best, highest weight first
    weights = [v["weight"] for v in state["variants"]]
    assert weights == sorted(weights, reverse=True)
    assert abs(sum(weights) - 0.8) < 1e-9
    for v in state["variants"]:
        er = v["expected_reward"]
        assert er["lo"] <= er["mean"] <= er["hi"]
        assert abs(v["weight"] - 0.8 * v["prob_best"]) < 1e-12
    top = await client.get(f"/api/v2/models/{model_id}/state?limit=1", headers=org.headers)
    assert len(top.json()["variants"]) == 1 and top.json()["variants_total"] == 3

    # Delete: soft, a fresh untrained model takes over (serving goes back to uniform).
    response = await client.delete(f"/api/v2/models/{model_id}", headers=org.headers)
    assert response.status_code == 200
    deleted = response.json()
    assert deleted["deleted"] is True and deleted["id"] == str(model_id)
    replacement = await model_id_of(conn, optimization_id)
    assert deleted["replacement_id"] == str(replacement) and replacement != model_id
    assert await conn.fetchval("SELECT deleted_at FROM models WHERE id = $1", model_id)
    assert await conn.fetchval("SELECT count(*) FROM model_versions") == 1  # kept
    assert (await client.get(f"/api/v2/models/{model_id}", headers=org.headers)).status_code == 404
    assert (
        await client.delete(f"/api/v2/models/{model_id}", headers=org.headers)
    ).status_code == 404
    fresh = (await client.get(f"/api/v2/models/{replacement}", headers=org.headers)).json()
    assert (fresh["status"], fresh["current_version"]) == ("untrained", None)
    response = await client.post(f"/api/v2/models/{replacement}/train", headers=org.headers)
    assert response.json()["version"] == 1  # versions restart with the new model


async def test_a_failed_training_is_a_409_and_shows_on_the_model(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org, with_metric=False)
    model_id = await model_id_of(conn, optimization_id)
    response = await client.post(f"/api/v2/models/{model_id}/train", headers=org.headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_reward_metric"
    shown = (await client.get(f"/api/v2/models/{model_id}", headers=org.headers)).json()
    assert shown["status"] == "failed" and "reward metric" in shown["last_error"]


async def test_serving_uses_the_trained_version_and_keeps_it_after_a_failure(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org, holdout_percentage=0)
    await simulate(conn, org, optimization_id, users=300)
    model_id = await model_id_of(conn, optimization_id)
    assert (await client.post(f"/api/v2/models/{model_id}/train", headers=org.headers)).is_success
    await conn.execute(
        "UPDATE metrics SET sql = 'SELECT nothing FROM nowhere' WHERE organization_id = $1",
        org.id,
    )
    response = await client.post(f"/api/v2/models/{model_id}/train", headers=org.headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "metric_failed"
    shown = (await client.get(f"/api/v2/models/{model_id}", headers=org.headers)).json()
    assert (shown["status"], shown["current_version"]) == ("failed", 1)
    served = None
    for _ in range(50):  # the LISTEN-refreshed cache may take a moment to see version 1
        served = (
            await client.post(
                f"/api/v2/optimizations/{optimization_id}/serve",
                json={"anonymous_id": "someone", "dry_run": True},
            )
        ).json()
        if served.get("model_version") == 1:
            break
        await asyncio.sleep(0.1)
    assert served is not None and served["model_version"] == 1


async def test_another_organizations_models_are_not_found(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    await simulate(conn, org, optimization_id, users=100)
    model_id = await model_id_of(conn, optimization_id)
    h = other_org.headers
    assert (await client.get("/api/v2/models", headers=h)).json()["models"] == []
    for response in (
        await client.get(f"/api/v2/models/{model_id}", headers=h),
        await client.get(f"/api/v2/models/{model_id}/state", headers=h),
        await client.post(f"/api/v2/models/{model_id}/train", headers=h),
        await client.delete(f"/api/v2/models/{model_id}", headers=h),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    assert (await client.get("/api/v2/models")).status_code == 401
    shown = (await client.get(f"/api/v2/models/{model_id}", headers=org.headers)).json()
    assert shown["status"] == "untrained"  # nothing happened to it
