"""``GET /api/v2/optimizations/{id}/observations`` against the real app and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from litestar.testing import AsyncTestClient

from tests.conftest import Org
from tests.integration.test_attribution import expose, insert_metric, insert_optimization, reward

Client = AsyncTestClient[Any]


def url(optimization_id: UUID, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v2/optimizations/{optimization_id}/observations" + (f"?{query}" if query else "")


async def populated(conn: asyncpg.Connection, org: Org, reward_type: str = "numeric") -> UUID:
    """25 matured exposures (u00 newest … u24 oldest), 3 pending; rewards for u03 and u07."""
    optimization_id = await insert_optimization(
        conn, org, await insert_metric(conn, org, reward_type), window_hours=24
    )
    base = datetime.now(UTC) - timedelta(days=10)
    for i in range(25):
        await expose(
            conn,
            org,
            optimization_id,
            f"u{i:02d}",
            base - timedelta(hours=i),
            variant_number=1 + i % 3,
            context={"country": "DE"},
            holdout=i % 5 == 0,
        )
    await reward(conn, org, "u03", base - timedelta(hours=2), 4.0)
    await reward(conn, org, "u03", base - timedelta(hours=1), 6.0)
    await reward(conn, org, "u07", base + timedelta(days=2), 9.0)  # after the window
    for i in range(3):
        await expose(
            conn, org, optimization_id, f"young{i}", datetime.now(UTC) - timedelta(hours=i)
        )
    return optimization_id


async def test_pages_through_matured_observations_newest_first(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await populated(conn, org)
    seen: list[str] = []
    for page in (1, 2, 3, 4):
        response = await client.get(url(optimization_id, page=page, size=10), headers=org.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["page"], body["size"], body["total"], body["pending"]) == (page, 10, 25, 3)
        assert body["meta"]["organization_id"] == str(org.id)
        assert len(body["observations"]) == {1: 10, 2: 10, 3: 5, 4: 0}[page]
        seen += [o["anonymous_id"] for o in body["observations"]]
    assert seen == [f"u{i:02d}" for i in range(25)]  # newest first, no overlap, nothing lost

    body = (await client.get(url(optimization_id, size=5), headers=org.headers)).json()
    assert body["page"] == 1 and len(body["observations"]) == 5
    by_user = {o["anonymous_id"]: o for o in body["observations"]}
    converted = by_user["u03"]
    assert converted["reward"] == 10.0 and converted["converted"] is True
    assert converted["variant_number"] == 1 and converted["variant"] == {"headline": "a"}
    assert converted["context"] == {"country": "DE"} and converted["holdout"] is False
    assert by_user["u00"]["holdout"] is True
    assert by_user["u01"]["reward"] == 0.0 and by_user["u01"]["converted"] is False
    assert datetime.fromisoformat(converted["timestamp"]) < datetime.now(UTC)


async def test_bool_metric_rewards_are_one_or_zero(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await populated(conn, org, "bool")
    body = (await client.get(url(optimization_id, size=25), headers=org.headers)).json()
    rewards = {o["anonymous_id"]: (o["reward"], o["converted"]) for o in body["observations"]}
    assert rewards["u03"] == (1.0, True)
    assert rewards["u07"] == (0.0, False)
    assert sum(r for r, _ in rewards.values()) == 1.0


async def test_another_organizations_optimization_is_not_found(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    optimization_id = await populated(conn, org)
    response = await client.get(url(optimization_id), headers=other_org.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    # Their events under the same anonymous ids never show up in ours.
    theirs = await insert_optimization(conn, other_org, await insert_metric(conn, other_org))
    await expose(conn, other_org, theirs, "u03", datetime.now(UTC) - timedelta(days=20))
    await reward(conn, other_org, "u03", datetime.now(UTC) - timedelta(days=20), 100.0)
    body = (await client.get(url(optimization_id, size=500), headers=org.headers)).json()
    assert body["total"] == 25
    assert {o["reward"] for o in body["observations"]} == {0.0, 10.0}


async def test_without_a_reward_metric_it_is_a_conflict(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await insert_optimization(conn, org, None)
    response = await client.get(url(optimization_id), headers=org.headers)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "no_reward_metric" and "reward metric" in error["message"]


async def test_paging_parameters_are_checked_and_auth_is_required(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await populated(conn, org)
    for params in ({"size": 0}, {"size": 501}, {"page": 0}, {"page": "x"}):
        response = await client.get(url(optimization_id, **params), headers=org.headers)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "validation_error"
    assert (await client.get(url(optimization_id))).status_code == 401
    response = await client.get(url(UUID(int=7)), headers=org.headers)
    assert response.status_code == 404
