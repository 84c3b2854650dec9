"""The warehouse endpoints against the real app: status, provider switch, catalog, preview,
ad-hoc queries (JSON values, limits, truncation), always scoped to the caller's organization."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from levered.db.sandbox import Limits
from tests.conftest import Org

Client = AsyncTestClient[Any]
URL = "/api/v2/warehouse"
REWARDS = "/api/v2/ingest/rewards"
T0 = datetime(2026, 6, 16, 10, 30, tzinfo=UTC)

INSERT_REWARD = """
INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "timestamp",
                               properties)
VALUES ($1, $2, $3, $4, $5, $6)
"""
INSERT_EXPOSURE = """
INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, variant,
                                 variant_number, "timestamp")
VALUES ($1, gen_random_uuid(), $2, '{"hero": "shield"}', 1, $3)
"""


async def seed(conn: asyncpg.Connection, org: Org, other: Org) -> None:
    """Three rewards and one exposure for ``org``; two rewards and two exposures for ``other``."""
    for anon, name, value in [
        ("u1", "signup_completed", 1.0),
        ("u2", "signup_completed", 1.0),
        ("u1", "purchase", 12.5),
    ]:
        await conn.execute(INSERT_REWARD, org.id, anon, name, value, T0, {"plan": "pro"})
    await conn.execute(INSERT_EXPOSURE, org.id, "u1", T0)
    for anon in ("globex-1", "globex-2"):
        await conn.execute(INSERT_REWARD, other.id, anon, "signup_completed", 1.0, T0, {})
        await conn.execute(INSERT_EXPOSURE, other.id, anon, T0)


async def query(client: Client, org: Org, sql: str, **extra: Any) -> Any:
    return await client.post(f"{URL}/query", json={"sql": sql, **extra}, headers=org.headers)


async def test_status_counts_only_the_callers_rows(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    await seed(conn, org, other_org)
    response = await client.get(URL, headers=org.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "managed" and body["healthy"] is True
    assert {t["name"]: t["rows"] for t in body["tables"]} == {"exposures": 1, "rewards": 3}
    assert all(t["description"] for t in body["tables"])
    assert body["meta"]["organization_id"] == str(org.id)

    other = (await client.get(URL, headers=other_org.headers)).json()
    assert {t["name"]: t["rows"] for t in other["tables"]} == {"exposures": 2, "rewards": 2}

    tables = (await client.get(f"{URL}/tables", headers=org.headers)).json()
    assert [t["name"] for t in tables["tables"]] == ["exposures", "rewards"]
    assert tables["meta"]["request_id"]


async def test_switch_provider(client: Client, org: Org, conn: asyncpg.Connection) -> None:
    await conn.execute(
        "UPDATE organizations SET warehouse_provider = 'postgres' WHERE id = $1", org.id
    )
    status = (await client.get(URL, headers=org.headers)).json()
    assert (status["provider"], status["healthy"], status["tables"]) == ("postgres", False, [])
    assert "no connection is stored" in status["error"]
    refused = await query(client, org, "SELECT 1")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "warehouse_not_connected"
    assert "PUT /api/v2/warehouse" in refused.json()["error"]["message"]

    response = await client.put(URL, json={"provider": "bigquery"}, headers=org.headers)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["path"] == "$.provider"
    response = await client.put(URL, json={"provider": "postgres"}, headers=org.headers)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["path"] == "$.dataset_id"
    bad = await client.put(URL, json={"provider": "managed", "x": 1}, headers=org.headers)
    assert bad.status_code == 400

    switched = await client.put(URL, json={"provider": "managed"}, headers=org.headers)
    assert switched.status_code == 200, switched.text
    assert switched.json()["provider"] == "managed" and switched.json()["healthy"] is True
    assert (
        await conn.fetchval("SELECT warehouse_provider FROM organizations WHERE id = $1", org.id)
        == "managed"
    )
    assert (await query(client, org, "SELECT 1 AS one")).json()["rows"] == [[1]]


async def test_columns_are_the_documented_ones(client: Client, org: Org) -> None:
    response = await client.get(f"{URL}/tables/rewards/columns", headers=org.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["table"] == "rewards"
    columns = {c["name"]: c for c in body["columns"]}
    assert list(columns) == [
        "anonymous_id",
        "name",
        "value",
        "timestamp",
        "optimization_id",
        "properties",
        "received_at",
        "idempotency_key",
    ]
    assert columns["timestamp"]["type"] == "timestamp with time zone"
    assert columns["value"]["type"] == "double precision"
    assert columns["properties"]["type"] == "jsonb"
    assert columns["optimization_id"]["nullable"] is True
    assert columns["anonymous_id"]["nullable"] is False
    assert all(c["description"] for c in body["columns"])

    exposures = (await client.get(f"{URL}/tables/exposures/columns", headers=org.headers)).json()
    names = [c["name"] for c in exposures["columns"]]
    assert "organization_id" not in names
    assert {"optimization_id", "anonymous_id", "variant", "context", "timestamp"} <= set(names)


async def test_unknown_tables_are_404(client: Client, org: Org) -> None:
    for table in ("nope", "tenant_roles", "api_keys", "..", "rewards;drop"):
        for suffix in ("columns", "preview"):
            response = await client.get(f"{URL}/tables/{table}/{suffix}", headers=org.headers)
            assert response.status_code == 404, (table, response.text)
            assert response.json()["error"]["code"] == "not_found"


async def test_preview_shows_own_rows_with_json_values(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    await seed(conn, org, other_org)
    response = await client.get(f"{URL}/tables/rewards/preview", headers=org.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    names = [c["name"] for c in body["columns"]]
    assert "organization_id" not in names
    rows = [dict(zip(names, row, strict=True)) for row in body["rows"]]
    assert body["row_count"] == 3 and body["truncated"] is False
    assert {r["anonymous_id"] for r in rows} == {"u1", "u2"}
    assert all(r["timestamp"] == "2026-06-16T10:30:00+00:00" for r in rows)
    assert all(r["properties"] == {"plan": "pro"} for r in rows)

    two = (await client.get(f"{URL}/tables/rewards/preview?n=2", headers=org.headers)).json()
    assert two["row_count"] == 2 and two["truncated"] is True
    assert (
        await client.get(f"{URL}/tables/rewards/preview?n=0", headers=org.headers)
    ).status_code == 400
    exposures = (await client.get(f"{URL}/tables/exposures/preview", headers=org.headers)).json()
    assert exposures["row_count"] == 1
    variant = exposures["rows"][0][[c["name"] for c in exposures["columns"]].index("variant")]
    assert variant == {"hero": "shield"}


async def test_query_returns_json_ready_values(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    await seed(conn, org, other_org)
    response = await query(
        client,
        org,
        "SELECT anonymous_id, timestamp, value, properties, organization_id, "
        "'7b0a5f6e-2d1c-4c8e-9a57-0d5f0b6c1e2a'::uuid AS u, 12.50::numeric AS n, "
        "DATE '2026-01-02' AS d, ARRAY[1, 2] AS a, NULL::text AS nothing, true AS yes, "
        "'\\x00ff'::bytea AS raw, interval '1 day' AS span "
        "FROM rewards WHERE name = 'purchase'",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["name"] for c in body["columns"]][:5] == [
        "anonymous_id",
        "timestamp",
        "value",
        "properties",
        "organization_id",
    ]
    types = {c["name"]: c["type"] for c in body["columns"]}
    assert types["timestamp"] == "timestamp with time zone" and types["u"] == "uuid"
    assert types["a"] == "integer[]"
    row = dict(zip(types, body["rows"][0], strict=True))
    assert row == {
        "anonymous_id": "u1",
        "timestamp": "2026-06-16T10:30:00+00:00",
        "value": 12.5,
        "properties": {"plan": "pro"},
        "organization_id": str(org.id),
        "u": "7b0a5f6e-2d1c-4c8e-9a57-0d5f0b6c1e2a",
        "n": 12.5,
        "d": "2026-01-02",
        "a": [1, 2],
        "nothing": None,
        "yes": True,
        "raw": "\\x00ff",
        "span": "P1D",
    }
    assert body["row_count"] == 1 and body["truncated"] is False
    assert body["elapsed_ms"] >= 0 and body["meta"]["organization_id"] == str(org.id)


async def test_limits(client: Client, org: Org) -> None:
    series = "SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 1000) AS g"
    default = (await query(client, org, series)).json()
    assert default["row_count"] == 100 and default["truncated"] is True
    assert default["rows"][0] == [1, "x" * 100]
    exact = (await query(client, org, "SELECT g FROM generate_series(1, 5) g", limit=5)).json()
    assert exact["row_count"] == 5 and exact["truncated"] is False
    for bad in ({"limit": 0}, {"limit": 10_001}, {"limit": "x"}, {"sqll": "x"}):
        response = await client.post(
            f"{URL}/query", json={"sql": "SELECT 1", **bad}, headers=org.headers
        )
        assert response.status_code == 400, bad
    assert (
        await client.post(f"{URL}/query", json={"sql": ""}, headers=org.headers)
    ).status_code == 400

    client.app.state.sandbox_limits = Limits(max_bytes=2_000)
    capped = (await query(client, org, series, limit=1000)).json()
    assert capped["truncated"] is True and 5 <= capped["row_count"] < 30


async def test_requires_credentials(client: Client) -> None:
    for method, path in [
        ("GET", URL),
        ("GET", f"{URL}/tables"),
        ("POST", f"{URL}/query"),
        ("PUT", URL),
        ("GET", f"{URL}/tables/rewards/preview"),
    ]:
        response = await client.request(method, path, json={"sql": "SELECT 1"})
        assert response.status_code == 401, (method, path)


async def test_ingested_rewards_are_queryable(client: Client, org: Org) -> None:
    events = [
        {
            "anonymous_id": "user_123",
            "name": "signup_completed",
            "value": 1,
            "timestamp": "2026-06-16T10:32:00Z",
            "properties": {"source": "doc"},
        }
    ]
    ingested = await client.post(REWARDS, json={"events": events}, headers=org.headers)
    assert ingested.status_code == 200, ingested.text
    body = (
        await query(
            client, org, "SELECT anonymous_id, name, value, timestamp, properties FROM rewards"
        )
    ).json()
    assert body["rows"] == [
        ["user_123", "signup_completed", 1.0, "2026-06-16T10:32:00+00:00", {"source": "doc"}]
    ]
