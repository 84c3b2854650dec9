"""``POST /api/v2/models/{id}/train`` with a per-factor exploration ``bias``, against the real
app and database: recorded with the version, a wider allocation on the same data and seed,
inherited by later trainings until cleared, and every malformed bias refused with a 400."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db.pool import create_pool
from levered.services import training
from levered.services.warehouse import Warehouse
from tests.conftest import Org
from tests.integration.test_training import EXPOSURE_COLUMNS, PURCHASE_SQL, REWARD_COLUMNS

Client = AsyncTestClient[Any]

DESIGN = [
    {"name": "headline", "levels": ["a", "b", "c"]},
    {"name": "cta", "levels": ["go", "try"]},
]
RATES = (0.04, 0.06, 0.12, 0.05, 0.08, 0.16)  # by variant number: headline c wins, try helps


async def two_factor_model(
    conn: asyncpg.Connection, org: Org, *, model_type: str = "cmab", users: int = 3000
) -> tuple[UUID, UUID]:
    """An optimization over headline × cta with simulated, matured traffic; (optimization id,
    model id)."""
    metric_id = await conn.fetchval(
        "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
        "value_col, reward_type) VALUES ($1, 'Purchases', $2, 'anonymous_id', 'timestamp', "
        "'value', 'bool') RETURNING id",
        org.id,
        PURCHASE_SQL,
    )
    optimization_id: UUID = await conn.fetchval(
        "INSERT INTO optimizations (organization_id, name, status, model_type, design_factors, "
        "context_factors, reward_metric_id, attribution, holdout_percentage) "
        "VALUES ($1, 'Hero', 'live', $2, $3, $4, $5, $6, 0) RETURNING id",
        org.id,
        model_type,
        DESIGN,
        [{"name": "country", "dtype": "str"}],
        metric_id,
        {"type": "last_touch", "conversion_window_hours": 1},
    )
    model_id: UUID = await conn.fetchval(
        "INSERT INTO models (organization_id, optimization_id) VALUES ($1, $2) RETURNING id",
        org.id,
        optimization_id,
    )
    rng = random.Random(5)
    start = datetime.now(UTC) - timedelta(days=3)
    exposures, rewards = [], []
    for i in range(users):
        number = 1 + i % len(RATES)
        headline, cta = (
            DESIGN[0]["levels"][(number - 1) // 2],
            DESIGN[1]["levels"][(number - 1) % 2],
        )
        at = start + timedelta(seconds=20 * i)
        exposures.append(
            (
                org.id,
                optimization_id,
                f"u{i}",
                {"headline": headline, "cta": cta},
                number,
                {"country": "DE" if i % 3 else "US"},
                at,
                False,
            )
        )
        if rng.random() < RATES[number - 1]:
            rewards.append((org.id, f"u{i}", "purchase", 1.0, at + timedelta(minutes=5)))
    await conn.copy_records_to_table(
        "exposures", schema_name="warehouse", records=exposures, columns=EXPOSURE_COLUMNS
    )
    await conn.copy_records_to_table(
        "rewards", schema_name="warehouse", records=rewards, columns=REWARD_COLUMNS
    )
    return optimization_id, model_id


def spread(state: dict[str, Any]) -> tuple[float, float]:
    """(max prob_best, entropy of prob_best) of a model state."""
    p = [v["prob_best"] for v in state["variants"]]
    return max(p), -sum(q * math.log(q) for q in p if q > 0)


async def train(client: Client, org: Org, model_id: UUID, body: Any = None) -> Any:
    response = await client.post(
        f"/api/v2/models/{model_id}/train?seed=7", headers=org.headers, json=body
    )
    assert response.status_code == 201, response.text
    return response.json()


async def state(client: Client, org: Org, model_id: UUID) -> Any:
    response = await client.get(f"/api/v2/models/{model_id}/state", headers=org.headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def wh(db_url: str) -> AsyncIterator[Warehouse]:
    pool = await create_pool(db_url, min_size=1, max_size=4)
    try:
        yield Warehouse(pool)
    finally:
        await pool.close()


@pytest.mark.parametrize("model_type", ["cmab", "mab"])
async def test_bias_is_recorded_widens_the_allocation_and_lasts_until_cleared(
    client: Client, conn: asyncpg.Connection, org: Org, wh: Warehouse, model_type: str
) -> None:
    optimization_id, model_id = await two_factor_model(conn, org, model_type=model_type)
    plain = await train(client, org, model_id)
    assert plain["bias"] is None
    plain_state = await state(client, org, model_id)
    assert plain_state["bias"] is None

    biased = await train(client, org, model_id, {"bias": {"headline": 2.0, "cta": 0.0}})
    assert (biased["version"], biased["seed"]) == (2, 7)
    assert biased["bias"] == {"headline": 2.0, "cta": 0.0}
    assert biased["counts"]["matured"] == plain["counts"]["matured"]  # the same data
    shown = (await client.get(f"/api/v2/models/{model_id}", headers=org.headers)).json()
    assert (shown["current_version"], shown["bias"]) == (2, {"headline": 2.0, "cta": 0.0})
    assert list(shown["bias"]) == list(biased["bias"]) == ["cta", "headline"]  # by name
    assert (await client.get("/api/v2/models", headers=org.headers)).json()["models"][0][
        "bias"
    ] == {"headline": 2.0, "cta": 0.0}
    recorded = await conn.fetchval(
        "SELECT bias FROM model_versions WHERE model_id = $1 AND version = 2", model_id
    )
    assert recorded == {"headline": 2.0, "cta": 0.0}

    biased_state = await state(client, org, model_id)
    assert biased_state["version"] == 2 and biased_state["bias"] == biased["bias"]
    plain_max, plain_entropy = spread(plain_state)
    wide_max, wide_entropy = spread(biased_state)
    assert wide_max < plain_max and wide_entropy > plain_entropy
    assert abs(sum(v["weight"] for v in biased_state["variants"]) - 1.0) < 1e-9

    # The scheduler's retrain (no bias given) and a bare POST keep the bias …
    inherited = await training.train(wh, org.id, optimization_id, seed=7)
    assert inherited.version == 3 and inherited.bias == {"headline": 2.0, "cta": 0.0}
    again = await train(client, org, model_id)
    assert again["version"] == 4 and again["bias"] == biased["bias"]
    assert spread(await state(client, org, model_id)) == (wide_max, wide_entropy)
    # … and {} clears it: the same data and seed give the plain allocation back exactly.
    cleared = await train(client, org, model_id, {"bias": {}})
    assert cleared["version"] == 5 and cleared["bias"] is None
    cleared_state = await state(client, org, model_id)
    assert [(v["number"], v["prob_best"]) for v in cleared_state["variants"]] == [
        (v["number"], v["prob_best"]) for v in plain_state["variants"]
    ]
    again = await train(client, org, model_id)
    assert again["bias"] is None


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        ({"bias": {"colour": 1.0}}, "$.bias.colour", "unknown design factor 'colour'"),
        ({"bias": {"headline": 1.0, "my cta": 1}}, '$.bias["my cta"]', "unknown design factor"),
        ({"bias": {"headline": -0.5}}, "$.bias.headline", "from 0 to 10, got -0.5"),
        ({"bias": {"headline": 10.5}}, "$.bias.headline", "from 0 to 10, got 10.5"),
        ({"bias": {"cta": 1e300, "headline": 1}}, "$.bias.cta", "got 1e+300"),
        ({"bias": {"headline": "inf"}}, "$.bias.headline", "finite number from 0 to 10, got inf"),
        ({"bias": {"headline": "-Infinity"}}, "$.bias.headline", "got -inf"),
        ({"bias": {"headline": "NaN"}}, "$.bias.headline", "got nan"),
        ({"bias": {"headline": True}}, "$.bias", "got `bool`"),
        ({"bias": {"headline": None}}, "$.bias", "got `null`"),
        ({"bias": [0.5]}, "$.bias", "got `array`"),
        ({"bias": "headline=0.5"}, "$.bias", "got `str`"),
        ({"bias": {"headline": 0.5}, "seed": 3}, "$.seed", "unknown field"),
        ([1, 2], "$", "got `array`"),
    ],
)
async def test_a_bad_bias_is_a_400_naming_the_field_and_leaves_the_model_alone(
    client: Client, conn: asyncpg.Connection, org: Org, body: Any, path: str, fragment: str
) -> None:
    _, model_id = await two_factor_model(conn, org, users=60)
    response = await client.post(f"/api/v2/models/{model_id}/train", headers=org.headers, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["path"].startswith(path), error
    assert fragment in error["details"][0]["message"], error
    assert path in error["message"]
    shown = (await client.get(f"/api/v2/models/{model_id}", headers=org.headers)).json()
    assert (shown["status"], shown["current_version"]) == ("untrained", None)


async def test_non_json_numbers_are_refused(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    """NaN and Infinity are not JSON: the body is malformed, a 400 before any training."""
    _, model_id = await two_factor_model(conn, org, users=60)
    for raw in (b'{"bias": {"headline": NaN}}', b'{"bias": {"headline": Infinity}}'):
        response = await client.post(
            f"/api/v2/models/{model_id}/train",
            headers=org.headers | {"content-type": "application/json"},
            content=raw,
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "validation_error"


async def test_a_bias_on_another_organizations_model_is_not_found(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    _, model_id = await two_factor_model(conn, org, users=60)
    response = await client.post(
        f"/api/v2/models/{model_id}/train",
        headers=other_org.headers,
        json={"bias": {"headline": 1.0}},
    )
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    # An unknown factor does not reveal the design of someone else's model either.
    response = await client.post(
        f"/api/v2/models/{model_id}/train",
        headers=other_org.headers,
        json={"bias": {"colour": 1.0}},
    )
    assert response.status_code == 404
