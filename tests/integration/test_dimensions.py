"""``GET /api/v2/optimizations/{id}/results?dimension=<context factor>``: per-value rates and
intervals from the stored cells, checked against the simulated traffic; bad dimensions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import Org
from tests.integration.test_training import EXPOSURE_COLUMNS, make_optimization, simulate

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Any]


async def test_results_by_a_context_factor(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    traffic = await simulate(conn, org, optimization_id, users=3000, holdout_every=5)
    # One exposure that sent no country: its value is null.
    await conn.copy_records_to_table(
        "exposures",
        schema_name="warehouse",
        columns=EXPOSURE_COLUMNS,
        records=[
            (
                org.id,
                optimization_id,
                "nocountry",
                {"headline": "b"},
                2,
                {},
                datetime.now(UTC) - timedelta(days=2),
                False,
            )
        ],
    )
    url = f"/api/v2/optimizations/{optimization_id}/results"
    plain = (await client.get(url, headers=org.headers)).json()
    assert plain["dimension"] is None
    response = await client.get(url, params={"dimension": "country"}, headers=org.headers)
    assert response.status_code == 200, response.text
    breakdown = response.json()["dimension"]
    assert breakdown["name"] == "country" and breakdown["values_total"] == 3
    values = {d["value"]: d for d in breakdown["values"]}
    assert values[None]["exposures"] == 1 and values[None]["variants"][0]["number"] == 2

    for country in ("DE", "US"):
        ids = {f"u{i}" for i in range(3000) if ("DE" if i % 2 else "US") == country}
        o = [v for u, v in traffic.optimized.items() if u in ids]
        h = [v for u, v in traffic.holdout.items() if u in ids]
        d = values[country]
        assert d["exposures"] == len(o) + len(h) == 1500
        assert d["optimized"]["exposures"] == len(o) and d["holdout"]["exposures"] == len(h)
        assert math.isclose(d["optimized"]["rate"], sum(o) / len(o))
        assert math.isclose(d["holdout"]["rate"], sum(h) / len(h))
        rate = sum(o) / len(o)
        half = 1.959963984540054 * math.sqrt(
            (sum(x * x for x in o) - sum(o) ** 2 / len(o)) / (len(o) - 1) / len(o)
        )
        assert d["optimized"]["ci"] == pytest.approx([rate - half, rate + half], rel=1e-9)
        assert math.isclose(
            d["lift_percent"], 100 * (d["optimized"]["rate"] / d["holdout"]["rate"] - 1)
        )
        assert d["lift_ci"] is not None and d["lift_ci"][0] < d["lift_percent"] < d["lift_ci"][1]
        assert sum(v["exposures"] for v in d["variants"]) == len(o)
    # Per variant, the values add up to the results' counts (holdout aside).
    for v in plain["variants"]:
        held = len(traffic.holdout) if v["number"] == 1 else 0
        total = sum(
            a["exposures"] for d in breakdown["values"] for a in d["variants"]
            if a["number"] == v["number"]
        )  # fmt: skip
        assert total == v["exposures"] - held


async def test_bad_dimensions_are_400s_naming_it(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    url = f"/api/v2/optimizations/{optimization_id}/results"
    for name in ("platform", "headline"):
        response = await client.get(url, params={"dimension": name}, headers=org.headers)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["details"][0]["path"] == "dimension" and name in error["message"]
        assert "country" in error["message"]
    empty = await client.get(url, params={"dimension": ""}, headers=org.headers)
    assert empty.status_code == 400
    foreign = await client.get(url, params={"dimension": "country"}, headers=other_org.headers)
    assert foreign.status_code == 404


async def test_results_by_a_dimension_the_model_does_not_use(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    optimization_id = await make_optimization(conn, org)
    traffic = await simulate(conn, org, optimization_id, users=3000, holdout_every=5)
    # "platform" is sent with every exposure but is no context factor: the model ignores it.
    # u0, u3, u6, … sent none (its value is null).
    platform = {f"u{i}": (None, "ios", "web")[i % 3] for i in range(3000)}
    await conn.execute(
        "UPDATE warehouse.exposures SET context = context || "
        "jsonb_build_object('platform', (ARRAY['ios', 'web'])[substr(anonymous_id, 2)::int % 3]) "
        "WHERE optimization_id = $1 AND substr(anonymous_id, 2)::int % 3 <> 0",
        optimization_id,
    )
    url = f"/api/v2/optimizations/{optimization_id}"
    before = await client.get(
        f"{url}/results", params={"dimension": "platform"}, headers=org.headers
    )
    assert before.status_code == 400 and "dimensions" in before.json()["error"]["message"]
    plain = (await client.get(f"{url}/results", headers=org.headers)).json()

    for bad, path in (
        (["country"], "$.dimensions[0]"),
        (["platform", "platform"], "$.dimensions[1]"),
    ):
        response = await client.patch(url, json={"dimensions": bad}, headers=org.headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"][0]["path"] == path
    too_many = [f"k{i}" for i in range(11)]
    response = await client.patch(url, json={"dimensions": too_many}, headers=org.headers)
    assert response.status_code == 400 and "dimensions" in response.text
    foreign = await client.patch(url, json={"dimensions": ["platform"]}, headers=other_org.headers)
    assert foreign.status_code == 404

    response = await client.patch(url, json={"dimensions": ["platform"]}, headers=org.headers)
    assert response.status_code == 200, response.text
    assert response.json()["dimensions"] == ["platform"]
    response = await client.get(
        f"{url}/results", params={"dimension": "platform"}, headers=org.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    breakdown = body["dimension"]
    assert breakdown["name"] == "platform" and breakdown["values_total"] == 3
    values = {d["value"]: d for d in breakdown["values"]}
    for value in (None, "ios", "web"):
        o = [v for u, v in traffic.optimized.items() if platform[u] == value]
        h = [v for u, v in traffic.holdout.items() if platform[u] == value]
        d = values[value]
        assert d["optimized"]["exposures"] == len(o) and d["holdout"]["exposures"] == len(h)
        assert math.isclose(d["optimized"]["rate"], sum(o) / len(o))
        assert math.isclose(d["holdout"]["rate"], sum(h) / len(h))
    # The model's own view is unchanged: same counts per variant as before the dimension.
    assert [(v["number"], v["exposures"]) for v in body["variants"]] == [
        (v["number"], v["exposures"]) for v in plain["variants"]
    ]
    # Stored per bucket, as the cells (the list's change rebuilt them), and only for this one.
    stored = await conn.fetchval(
        "SELECT sum(exposures) FROM observation_dimension_cells WHERE optimization_id = $1",
        optimization_id,
    )
    assert stored == 3000
