"""Results and model state for one context (cmab): each device sees its own winner."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from tests.conftest import Org

RATES = {
    ("mobile", "a"): 0.05,
    ("mobile", "b"): 0.30,
    ("desktop", "a"): 0.30,
    ("desktop", "b"): 0.05,
}


async def _trained(client: AsyncTestClient[Any], conn: asyncpg.Connection, org: Org) -> Any:
    metric = await conn.fetchval(
        "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
        "reward_type) VALUES ($1, 'Sign-ups', 'SELECT anonymous_id, timestamp FROM rewards "
        "WHERE name = ''signup''', 'anonymous_id', 'timestamp', 'bool') RETURNING id",
        org.id,
    )
    created = await client.post(
        "/api/v2/optimizations",
        headers=org.headers,
        json={
            "name": "By device",
            "reward_metric_id": str(metric),
            "holdout_percentage": 0,
            "design_factors": [{"name": "headline", "levels": ["a", "b"]}],
            "context_factors": [{"name": "device", "levels": ["mobile", "desktop"]}],
            "attribution": {"type": "last_touch", "conversion_window_hours": 1},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    rng = random.Random(5)
    exposures, rewards = [], []
    for i in range(3000):
        device, headline = rng.choice(["mobile", "desktop"]), rng.choice(["a", "b"])
        user = f"u{i}"
        exposures.append(
            (
                org.id,
                body["id"],
                user,
                {"headline": headline},
                1 if headline == "a" else 2,
                {"device": device},
            )
        )
        if rng.random() < RATES[(device, headline)]:
            rewards.append((org.id, user))
    await conn.executemany(
        "INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, "
        "variant, variant_number, context, timestamp) VALUES ($1, $2, $3, $4, $5, $6, "
        "now() - interval '3 hours')",
        exposures,
    )
    await conn.executemany(
        "INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, timestamp) "
        "VALUES ($1, $2, 'signup', now() - interval '170 minutes')",
        rewards,
    )
    trained = await client.post(f"/api/v2/models/{body['model']['id']}/train", headers=org.headers)
    assert trained.status_code == 201, trained.text
    return body


def _best(variants: list[dict[str, Any]]) -> int:
    return int(max(variants, key=lambda v: v["prob_best"])["number"])


async def test_each_context_has_its_own_winner(
    client: AsyncTestClient[Any], conn: asyncpg.Connection, org: Org
) -> None:
    body = await _trained(client, conn, org)
    url = f"/api/v2/optimizations/{body['id']}/results"
    mobile = (
        await client.get(url, params={"context": '{"device": "mobile"}'}, headers=org.headers)
    ).json()
    desktop = (
        await client.get(url, params={"context": '{"device": "desktop"}'}, headers=org.headers)
    ).json()
    assert mobile["context"] == {"device": "mobile"}
    assert _best(mobile["variants"]) == 2 and _best(desktop["variants"]) == 1
    assert mobile["variants"][0]["exposures"] + mobile["variants"][1]["exposures"] == 3000

    state_url = f"/api/v2/models/{body['model']['id']}/state"
    state = (
        await client.get(
            state_url, params={"context": '{"device": "desktop"}'}, headers=org.headers
        )
    ).json()
    assert state["context"] == {"device": "desktop"} and _best(state["variants"]) == 1
    population = (await client.get(state_url, headers=org.headers)).json()
    assert population["context"] is None
    coefficients = {c["name"]: c for c in population["coefficients"]}
    mobile_b = coefficients["device=mobile × headline=b"]
    desktop_b = coefficients["device=desktop × headline=b"]
    assert mobile_b["lo"] <= mobile_b["mean"] <= mobile_b["hi"]
    assert mobile_b["mean"] > desktop_b["mean"]  # mobile users prefer b, desktop users a
    cells = {c["context"]["device"]: c["exposures"] for c in population["context_cells"]}
    assert cells["mobile"] + cells["desktop"] == 3000


async def test_a_malformed_context_is_a_400(
    client: AsyncTestClient[Any], org: Org, conn: asyncpg.Connection
) -> None:
    body = await _trained(client, conn, org)
    for bad in ("{not json", "[1, 2]", '{"device": {"nested": 1}}'):
        response = await client.get(
            f"/api/v2/optimizations/{body['id']}/results",
            params={"context": bad},
            headers=org.headers,
        )
        assert response.status_code == 400
        assert response.json()["error"]["details"][0]["path"] == "$.query.context"
