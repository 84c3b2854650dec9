"""Weighted-outcome metrics against the real app and warehouse: the rules of a definition (each
problem a 400 naming its field), the normalized rows, and a planted truth — a variant that
converts more often but to a low-weight outcome loses to one that converts less often to a
high-weight outcome, with the outcome mix per variant counted exactly (stored cells and a
from-scratch attribution agree)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from levered.db.pool import create_pool
from levered.schemas.optimizations import OptimizationResponse
from levered.services import observations
from levered.services.warehouse import Warehouse
from tests.conftest import Org

Client = AsyncTestClient[Any]
URL = "/api/v2/metrics"
EVENTS = "SELECT anonymous_id, timestamp, name, value FROM rewards WHERE timestamp >= @start_date"
CART = {"key": "add_to_cart", "weight": 0.1, "match": {"by": "name", "value": "add_to_cart"}}
PURCHASE = {"key": "purchase", "weight": 1.0, "match": {"by": "name", "value": "purchase"}}
BASE: dict[str, Any] = {
    "name": "Checkout value",
    "sql": EVENTS,
    "anonymous_id_col": "anonymous_id",
    "timestamp_col": "timestamp",
    "name_col": "name",
    "outcomes": [CART, PURCHASE],
}
DESIGN = [{"name": "headline", "levels": ["a", "b", "c"]}]
EXPOSURE_COLUMNS = [
    "organization_id",
    "optimization_id",
    "anonymous_id",
    "variant",
    "variant_number",
    "context",
    "timestamp",
    "holdout",
]
REWARD_COLUMNS = ["organization_id", "anonymous_id", "name", "value", "timestamp"]


async def guard_with(
    client: Client, org: Org, optimization_id: Any, metric_id: Any, *, tolerance: float
) -> dict[str, Any]:
    """Make ``metric_id`` the optimization's one guardrail (must not decrease by more than
    ``tolerance`` %) and return its evaluation as the guardrails endpoint reports it."""
    guarded = await client.patch(
        f"/api/v2/optimizations/{optimization_id}",
        json={
            "guardrails": [
                {
                    "metric_id": str(metric_id),
                    "direction": "must_not_decrease",
                    "tolerance_percent": tolerance,
                }
            ]
        },
        headers=org.headers,
    )
    assert guarded.status_code == 200, guarded.text
    report = await client.get(
        f"/api/v2/optimizations/{optimization_id}/guardrails", headers=org.headers
    )
    assert report.status_code == 200, report.text
    (g,) = report.json()["guardrails"]
    return dict(g)


async def create(client: Client, org: Org, **change: Any) -> Any:
    body = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    return await client.post(URL, json=body, headers=org.headers)


async def test_each_broken_rule_is_a_400_naming_its_field(client: Client, org: Org) -> None:
    by_value = {"key": "big", "weight": 5, "match": {"by": "value", "value": 100}}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"outcomes": [PURCHASE]}, "$.outcomes", "length >= 2"),
        ({"outcomes": [CART, {**PURCHASE, "key": "add_to_cart"}]}, "$.outcomes[1].key", "repeats"),
        ({"outcomes": [{**CART, "key": "failure"}, PURCHASE]}, "$.outcomes[0].key", "reserved"),
        ({"outcomes": [CART, {**PURCHASE, "key": "Failure"}]}, "$.outcomes[1].key", "reserved"),
        ({"name_col": None}, "$.name_col", "$.outcomes[0], $.outcomes[1] match by name"),
        ({"outcomes": [CART, by_value]}, "$.value_col", "$.outcomes[1] match by value"),
        ({"outcomes": [CART, {**PURCHASE, "weight": 0.1}]}, "$.outcomes[1].weight", "distinct"),
        ({"outcomes": [CART, {**PURCHASE, "match": CART["match"]}]}, "$.outcomes[1].match", "same"),
        ({"reward_type": "numeric"}, "$.reward_type", "weighted"),
        ({"outcomes": None, "reward_type": "weighted"}, "$.outcomes", "required"),
        ({"outcomes": None}, "$.name_col", "only a weighted metric"),
        ({"name_col": "kind"}, "$.name_col", "is not a column"),
        ({"name_col": "value"}, "$.name_col", "has type double precision"),
        (
            {"outcomes": [CART, {**PURCHASE, "match": {"by": "name", "value": 3}}]},
            "$.outcomes[1].match.value",
            "Expected `str`",
        ),
        (
            {"outcomes": [CART, {**PURCHASE, "match": {"by": "kind", "value": "x"}}]},
            "$.outcomes[1].match.by",
            "Invalid value",
        ),
        ({"outcomes": [CART, {**PURCHASE, "weight": 1e12}]}, "$.outcomes[1].weight", "<="),
    ]
    for change, path, words in cases:
        response = await create(client, org, **change)
        assert response.status_code == 400, (change, response.text)
        error = response.json()["error"]
        assert words in error["message"], (change, error)
        assert path in [d["path"] for d in error["details"]], (change, error)
    assert (await client.get(URL, headers=org.headers)).json()["metrics"] == []


async def test_create_show_and_preview(client: Client, org: Org, conn: asyncpg.Connection) -> None:
    at = datetime(2026, 6, 16, 10, tzinfo=UTC)
    await conn.copy_records_to_table(
        "rewards",
        schema_name="warehouse",
        columns=REWARD_COLUMNS,
        records=[
            (org.id, "u1", "add_to_cart", 1.0, at),
            (org.id, "u1", "purchase", 30.0, at + timedelta(minutes=1)),
            (org.id, "u2", "page_view", 1.0, at + timedelta(minutes=2)),  # no outcome
            (org.id, "u3", "it's", 1.0, at + timedelta(minutes=3)),
            (org.id, "u4", "big", 100.0, at + timedelta(minutes=4)),
        ],
    )
    quoted = {"key": "quoted", "weight": 0.5, "match": {"by": "name", "value": "it's"}}
    big = {"key": "big", "weight": -2, "match": {"by": "value", "value": 100}}
    response = await create(client, org, outcomes=[CART, PURCHASE, quoted, big], value_col="value")
    assert response.status_code == 201, response.text
    metric = response.json()
    assert metric["reward_type"] == "weighted" and metric["name_col"] == "name"
    assert metric["outcomes"][0] == CART and metric["outcomes"][3]["match"]["value"] == 100.0
    shown = (await client.get(f"{URL}/{metric['id']}", headers=org.headers)).json()
    assert shown["outcomes"] == metric["outcomes"]

    linked = await client.post(
        "/api/v2/optimizations",
        json={"name": "Checkout", "design_factors": DESIGN, "reward_metric_id": metric["id"]},
        headers=org.headers,
    )
    assert linked.status_code == 201, linked.text
    assert linked.json()["reward_metric"]["reward_type"] == "weighted"
    decoded = msgspec.json.decode(linked.content, type=OptimizationResponse)  # as clients do
    assert decoded.reward_metric is not None and decoded.reward_metric.reward_type == "weighted"

    preview = await client.get(f"{URL}/{metric['id']}/preview", headers=org.headers)
    assert preview.status_code == 200, preview.text
    rows = [(r["anonymous_id"], r["value"]) for r in preview.json()["rows"]]
    assert rows == [("u4", -2.0), ("u3", 0.5), ("u1", 1.0), ("u1", 0.1)]  # page_view: failure


async def make_optimization(conn: asyncpg.Connection, org: Org, metric_id: UUID) -> UUID:
    optimization_id: UUID = await conn.fetchval(
        "INSERT INTO optimizations (organization_id, name, status, model_type, design_factors, "
        "context_factors, reward_metric_id, attribution, holdout_percentage) "
        "VALUES ($1, 'Checkout', 'live', 'cmab', $2, $3, $4, $5, 10) RETURNING id",
        org.id,
        DESIGN,
        [{"name": "country", "dtype": "str"}],
        metric_id,
        {"type": "last_touch", "conversion_window_hours": 1},
    )
    await conn.execute(
        "INSERT INTO models (organization_id, optimization_id) VALUES ($1, $2)",
        org.id,
        optimization_id,
    )
    return optimization_id


# Per variant: P(add to cart only), P(purchase). Variant 2 ("A") converts most often but mostly
# to the 0.1 outcome (E = 0.1 · 0.50 + 0.04 = 0.09); variant 3 ("B") converts less often, mostly
# to the 1.0 outcome (E = 0.1 · 0.05 + 0.15 = 0.155).
TRUTH = {1: (0.10, 0.02), 2: (0.50, 0.04), 3: (0.05, 0.15)}


async def simulate(
    conn: asyncpg.Connection, org: Org, optimization_id: UUID, users: int
) -> dict[int, Counter[str]]:
    """One exposure per user, variants round-robin, every 10th user holdout (variant 1); every
    purchaser also adds to cart first (the highest-weight outcome must win), and a third of the
    users view a page (no outcome). The outcome of each exposure, per variant."""
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=2)
    exposures, rewards = [], []
    mix: dict[int, Counter[str]] = {v: Counter() for v in TRUTH}
    for i in range(users):
        anonymous_id = f"w{i}"
        holdout = i % 10 == 0
        number = 1 if holdout else 1 + i % 3
        at = start + timedelta(seconds=20 * i)
        context = {"country": "DE" if i % 2 else "US"}
        variant = {"headline": DESIGN[0]["levels"][number - 1]}
        exposures.append(
            (org.id, optimization_id, anonymous_id, variant, number, context, at, holdout)
        )
        cart, purchase = TRUTH[number]
        draw = rng.random()
        outcome = "failure"
        if draw < purchase:
            outcome = "purchase"
            rewards.append((org.id, anonymous_id, "add_to_cart", 1.0, at + timedelta(minutes=2)))
            rewards.append((org.id, anonymous_id, "purchase", 20.0, at + timedelta(minutes=4)))
        elif draw < purchase + cart:
            outcome = "add_to_cart"
            rewards.append((org.id, anonymous_id, "add_to_cart", 1.0, at + timedelta(minutes=3)))
        if i % 3 == 0:
            rewards.append((org.id, anonymous_id, "page_view", 1.0, at + timedelta(minutes=1)))
        mix[number][outcome] += 1
    await conn.copy_records_to_table(
        "exposures", schema_name="warehouse", records=exposures, columns=EXPOSURE_COLUMNS
    )
    await conn.copy_records_to_table(
        "rewards", schema_name="warehouse", records=rewards, columns=REWARD_COLUMNS
    )
    return mix


async def test_the_variant_that_wins_on_weighted_value_wins(
    client: Client, org: Org, conn: asyncpg.Connection, db_url: str
) -> None:
    response = await create(client, org)
    assert response.status_code == 201, response.text
    optimization_id = await make_optimization(conn, org, UUID(response.json()["id"]))
    planted = await simulate(conn, org, optimization_id, users=3000)
    # Counted by conversions, A (2) beats B (3): the model must not be choosing on counts.
    converted = {v: sum(c.values()) - c["failure"] for v, c in planted.items()}
    assert converted[2] > 1.5 * converted[3]

    model_id = await conn.fetchval(
        "SELECT id FROM models WHERE optimization_id = $1", optimization_id
    )
    trained = await client.post(f"/api/v2/models/{model_id}/train?seed=3", headers=org.headers)
    assert trained.status_code == 201, trained.text
    results = await client.get(
        f"/api/v2/optimizations/{optimization_id}/results", headers=org.headers
    )
    assert results.status_code == 200, results.text
    body = results.json()
    assert body["reward_type"] == "weighted" and body["note"] is None
    variants = {v["number"]: v for v in body["variants"]}
    assert body["variants"][0]["number"] == 3 and variants[3]["prob_best"] > 0.9
    assert variants[3]["expected_reward"]["mean"] > variants[2]["expected_reward"]["mean"]
    for number, v in variants.items():
        counts = planted[number]
        assert v["exposures"] == sum(counts.values())
        assert v["conversions"] is None
        assert v["reward_sum"] == pytest.approx(counts["purchase"] + 0.1 * counts["add_to_cart"])
        mix = {o["key"]: (o["weight"], o["exposures"]) for o in v["outcomes"]}
        assert list(mix) == ["add_to_cart", "purchase", "failure"]
        assert mix == {
            "add_to_cart": (0.1, counts["add_to_cart"]),
            "purchase": (1.0, counts["purchase"]),
            "failure": (0.0, counts["failure"]),
        }
        assert sum(o["share"] for o in v["outcomes"]) == pytest.approx(1.0)

    # The same metric as a guardrail: its own cells give the same per-user arms as the reward
    # cells' measured lift (a user's outcome: the sum of their exposures' weights).
    g = await guard_with(client, org, optimization_id, response.json()["id"], tolerance=5)
    lift = body["measured_lift"]
    assert g["reward_type"] == "weighted" and g["status"] in ("ok", "pending"), g
    assert (g["optimized_users"], g["holdout_users"]) == (
        lift["optimized_users"],
        lift["holdout_users"],
    )
    assert g["optimized_rate"] == pytest.approx(lift["optimized_rate"])
    assert g["holdout_rate"] == pytest.approx(lift["holdout_rate"])

    # A from-scratch attribution counts the same mix as the stored cells.
    pool = await create_pool(db_url, min_size=1, max_size=4)
    try:
        fresh = await observations.attribute(Warehouse(pool), org.id, optimization_id)
    finally:
        await pool.close()
    assert fresh.reward_type == "weighted"
    assert fresh.outcome_counts == {
        v: [planted[v]["add_to_cart"], planted[v]["purchase"]] for v in planted
    }

    page = await client.get(
        f"/api/v2/optimizations/{optimization_id}/observations?size=100", headers=org.headers
    )
    assert page.status_code == 200, page.text
    rewards = {o["reward"] for o in page.json()["observations"]}
    assert rewards <= {0.0, 0.1, 1.0} and 1.0 in rewards  # a purchaser's cart row never adds
