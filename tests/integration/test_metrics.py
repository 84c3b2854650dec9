"""Metrics against the real app: the sign-up metric of the docs over the managed tables, the
dry run on save (columns, types, SQL errors, timeout), previews that match what was ingested
and never another organization's rows, listing, cross-organization 404s, deletion rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from litestar.testing import AsyncTestClient

from levered.db import sandbox
from levered.db.sandbox import Limits
from levered.schemas.metrics import MetricCreate
from levered.services.metrics import bind_start_date, metric_rows_sql
from tests.conftest import Org

Client = AsyncTestClient[Any]
URL = "/api/v2/metrics"
REWARDS = "/api/v2/ingest/rewards"
SIGNUPS = (
    "SELECT anonymous_id, timestamp FROM rewards "
    "WHERE name = 'signup_completed' AND timestamp >= @start_date"
)
INSERT_OPTIMIZATION = """
INSERT INTO optimizations (organization_id, name, status, model_type, design_factors,
                           attribution, holdout_percentage, reward_metric_id)
VALUES ($1, $2, $3, 'cmab', '[{"name": "hero", "levels": ["a", "b"]}]',
        '{"type": "last_touch", "conversion_window_hours": 24}', 10, $4)
RETURNING id
"""


def event(anon: str, name: str, minute: int, value: float = 1, **extra: Any) -> dict[str, Any]:
    return {
        "anonymous_id": anon,
        "name": name,
        "value": value,
        "timestamp": f"2026-06-16T10:{minute:02d}:00Z",
        **extra,
    }


async def ingest(client: Client, org: Org, events: list[dict[str, Any]]) -> None:
    response = await client.post(REWARDS, json={"events": events}, headers=org.headers)
    assert response.status_code == 200, response.text


async def create(client: Client, org: Org, **body: Any) -> Any:
    return await client.post(URL, json=body, headers=org.headers)


async def signups(client: Client, org: Org, name: str = "Sign-ups") -> dict[str, Any]:
    response = await create(
        client,
        org,
        name=name,
        sql=SIGNUPS,
        anonymous_id_col="anonymous_id",
        timestamp_col="timestamp",
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_signup_metric_from_the_docs(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    await ingest(
        client,
        org,
        [
            event("user_123", "signup_completed", 32),
            event("user_456", "signup_completed", 35),
            event("user_123", "purchase", 40, 12.5),
        ],
    )
    await ingest(client, other_org, [event("globex_1", "signup_completed", 33)])

    metric = await signups(client, org)
    assert metric["reward_type"] == "bool" and metric["value_col"] is None
    assert metric["sql"] == SIGNUPS and metric["meta"]["organization_id"] == str(org.id)
    stored = await conn.fetchval(
        "SELECT organization_id FROM metrics WHERE id = $1", UUID(metric["id"])
    )
    assert stored == org.id

    response = await client.get(f"{URL}/{metric['id']}/preview", headers=org.headers)
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["metric_id"] == metric["id"] and preview["truncated"] is False
    assert preview["rows"] == [  # newest first, exactly what was ingested, nothing of Globex
        {"anonymous_id": "user_456", "timestamp": "2026-06-16T10:35:00Z", "value": 1.0},
        {"anonymous_id": "user_123", "timestamp": "2026-06-16T10:32:00Z", "value": 1.0},
    ]
    assert preview["row_count"] == 2 and preview["meta"]["request_id"]

    one = (await client.get(f"{URL}/{metric['id']}/preview?limit=1", headers=org.headers)).json()
    assert one["row_count"] == 1 and one["truncated"] is True
    assert (
        await client.get(f"{URL}/{metric['id']}/preview?limit=0", headers=org.headers)
    ).status_code == 400

    shown = await client.get(f"{URL}/{metric['id']}", headers=org.headers)
    assert shown.status_code == 200
    assert {k: v for k, v in shown.json().items() if k != "meta"} == {
        k: v for k, v in metric.items() if k != "meta"
    }


async def test_numeric_metric_sums_values(client: Client, org: Org) -> None:
    await ingest(
        client,
        org,
        [
            event("a", "purchase", 1, 12.5),
            event("b", "purchase", 2, 3),
            event("c", "signup_completed", 3),
        ],
    )
    response = await create(
        client,
        org,
        name="Revenue",
        sql="SELECT anonymous_id AS who, timestamp AS at, value AS amount FROM rewards "
        "WHERE name = 'purchase' AND timestamp >= @start_date  -- trailing comment",
        anonymous_id_col="who",
        timestamp_col="at",
        value_col="amount",
    )
    assert response.status_code == 201, response.text
    metric = response.json()
    assert metric["reward_type"] == "numeric" and metric["value_col"] == "amount"
    preview = (await client.get(f"{URL}/{metric['id']}/preview", headers=org.headers)).json()
    assert [(r["anonymous_id"], r["value"]) for r in preview["rows"]] == [("b", 3.0), ("a", 12.5)]


async def test_value_columns_of_other_types(client: Client, org: Org) -> None:
    await ingest(
        client,
        org,
        [
            event("a", "purchase", 1, 12.5),
            event("b", "purchase", 2, 3),
            event("c", "purchase", 3, 0),
        ],
    )
    big = await create(
        client,
        org,
        name="Big purchases (bool with a value column)",
        sql="SELECT anonymous_id, timestamp::date AS day, value > 5 AS big FROM rewards",
        anonymous_id_col="anonymous_id",
        timestamp_col="day",
        value_col="big",
        reward_type="bool",
    )
    assert big.status_code == 201, big.text
    rows = (await client.get(f"{URL}/{big.json()['id']}/preview", headers=org.headers)).json()
    assert [(r["anonymous_id"], r["timestamp"], r["value"]) for r in rows["rows"]] == [
        ("a", "2026-06-16T00:00:00Z", 1.0)
    ]
    counted = await create(
        client,
        org,
        name="Integer values",
        sql="SELECT anonymous_id::uuid::text AS anonymous_id, timestamp, 2::int AS n "
        "FROM rewards WHERE false UNION ALL SELECT 'x', now(), NULL",
        anonymous_id_col="anonymous_id",
        timestamp_col="timestamp",
        value_col="n",
    )
    assert counted.status_code == 201, counted.text
    rows = (await client.get(f"{URL}/{counted.json()['id']}/preview", headers=org.headers)).json()
    assert [r["value"] for r in rows["rows"]] == [0.0]  # NULL counts as 0
    uuid_ids = await create(
        client,
        org,
        name="uuid ids",
        sql="SELECT gen_random_uuid() AS id, now() AS t",
        anonymous_id_col="id",
        timestamp_col="t",
    )
    assert uuid_ids.status_code == 201, uuid_ids.text


async def test_dry_run_names_the_column_and_the_problem(client: Client, org: Org) -> None:
    base = {
        "name": "m",
        "sql": SIGNUPS,
        "anonymous_id_col": "anonymous_id",
        "timestamp_col": "timestamp",
    }
    cases: list[tuple[dict[str, Any], str, list[str]]] = [
        (
            {"timestamp_col": "signed_up_at"},
            "$.timestamp_col",
            ["'signed_up_at'", "is not a column", "'anonymous_id', 'timestamp'"],
        ),
        (
            {"anonymous_id_col": "Anonymous_ID"},
            "$.anonymous_id_col",
            ["did you mean 'anonymous_id'"],
        ),
        ({"value_col": "value"}, "$.value_col", ["'value'", "is not a column"]),
        ({"reward_type": "numeric"}, "$.value_col", ["numeric metric needs value_col"]),
        (
            {"sql": "SELECT value AS anonymous_id, timestamp FROM rewards"},
            "$.anonymous_id_col",
            ["has type double precision", "expected text, varchar or uuid"],
        ),
        (
            {"sql": "SELECT anonymous_id, name AS timestamp FROM rewards"},
            "$.timestamp_col",
            ["has type text", "expected timestamptz, timestamp or date"],
        ),
        (
            {"sql": "SELECT anonymous_id, timestamp, name FROM rewards", "value_col": "name"},
            "$.value_col",
            ["has type text", "a number or a boolean"],
        ),
        (
            {"sql": "SELECT anonymous_id, timestamp, timestamp FROM rewards"},
            "$.timestamp_col",
            ["appears 2 times"],
        ),
    ]
    for change, path, words in cases:
        response = await create(client, org, **{**base, **change})
        assert response.status_code == 400, (change, response.text)
        error = response.json()["error"]
        for word in words:
            assert word in error["message"], (change, error)
        assert error["details"][0]["path"] == path, (change, error)
    assert (await client.get(URL, headers=org.headers)).json()["metrics"] == []


async def test_dry_run_reports_sql_errors(client: Client, org: Org) -> None:
    def body(sql: str) -> dict[str, Any]:
        return {
            "name": "m",
            "sql": sql,
            "anonymous_id_col": "anonymous_id",
            "timestamp_col": "timestamp",
        }

    cases = [
        ("SELECT anonymous_id, timestamp FROM sign_ups", "42P01", "unknown table"),
        ("SELECT anonymous_id, timestamp FROM analytics.sign_ups", "42P01", "unknown table"),
        ("SELECT anonymous_id, timestamp FROM public.users", "42501", "permission denied"),
        (
            "SELECT anonymous_id, timestamp FROM rewards; DELETE FROM rewards",
            "42601",
            "only one SQL statement",
        ),
        ("DELETE FROM rewards RETURNING anonymous_id, timestamp", "25006", "read-only"),
        ("SELECT anonymous_id, timestamp FROM rewards WHERE timestamp >= $2", None, "parameter"),
        ("SELECT anonymous_id, timestamp FROM rewards WHERE 1/0 = 1", "22012", "division"),
        ("SELECT anonymous_id, timestamp FROM rewards; -- done", "42601", "subquery"),
        ("SELECT 'a' AS anonymous_id, now() AS timestamp FROM pg_sleep(30)", "57014", "timeout"),
    ]
    client.app.state.sandbox_limits = Limits(timeout_s=0.5)
    for sql, sqlstate, words in cases:
        response = await create(client, org, **body(sql))
        assert response.status_code == 400, (sql, response.text)
        error = response.json()["error"]
        assert "dry run" in error["message"] and words.lower() in error["message"].lower(), (
            sql,
            error,
        )
        assert error["details"]["path"] == "$.sql"
        if sqlstate:
            assert error["details"]["sqlstate"] == sqlstate, (sql, error)
    assert (await client.get("/health")).status_code == 200
    assert (await client.get(URL, headers=org.headers)).json()["metrics"] == []


async def test_list_show_and_other_organizations(client: Client, org: Org, other_org: Org) -> None:
    first = await signups(client, org, "first")
    second = await signups(client, org, "second")
    theirs = await signups(client, other_org, "theirs")
    listed = (await client.get(URL, headers=org.headers)).json()
    assert [m["name"] for m in listed["metrics"]] == ["second", "first"]
    assert listed["meta"]["organization_id"] == str(org.id)
    assert [
        m["id"] for m in (await client.get(f"{URL}?limit=1", headers=org.headers)).json()["metrics"]
    ] == [second["id"]]

    for method, path in [
        ("GET", f"{URL}/{theirs['id']}"),
        ("GET", f"{URL}/{theirs['id']}/preview"),
        ("DELETE", f"{URL}/{theirs['id']}"),
        ("GET", f"{URL}/00000000-0000-0000-0000-000000000000"),
    ]:
        response = await client.request(method, path, headers=org.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    assert (await client.get(f"{URL}/{first['id']}", headers=other_org.headers)).status_code == 404
    assert (await client.get(URL)).status_code == 401
    bad = await create(
        client, org, name="x", sql="SELECT 1", anonymous_id_col="a", timestamp_col="t", extra=1
    )
    assert bad.status_code == 400


async def test_preview_never_returns_another_organizations_rows(
    client: Client, org: Org, other_org: Org
) -> None:
    await ingest(client, org, [event("mine", "signup_completed", 1)])
    await ingest(client, other_org, [event("theirs", "signup_completed", 2)])
    response = await create(
        client,
        org,
        name="greedy",
        sql=f"SELECT anonymous_id, timestamp FROM warehouse.rewards "
        f"WHERE organization_id IN ('{other_org.id}', '{org.id}') OR true",
        anonymous_id_col="anonymous_id",
        timestamp_col="timestamp",
    )
    assert response.status_code == 201, response.text
    preview = (
        await client.get(f"{URL}/{response.json()['id']}/preview?limit=1000", headers=org.headers)
    ).json()
    assert [r["anonymous_id"] for r in preview["rows"]] == ["mine"]


async def test_delete_rules(client: Client, org: Org, conn: asyncpg.Connection) -> None:
    unused = await signups(client, org, "unused")
    deleted = await client.delete(f"{URL}/{unused['id']}", headers=org.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["id"] == unused["id"] and deleted.json()["deleted"] is True
    assert (await client.get(f"{URL}/{unused['id']}", headers=org.headers)).status_code == 404
    assert (await client.delete(f"{URL}/{unused['id']}", headers=org.headers)).status_code == 404

    for status in ("live", "draft", "archived"):
        metric = await signups(client, org, f"used by {status}")
        await conn.execute(
            INSERT_OPTIMIZATION, org.id, f"Hero ({status})", status, UUID(metric["id"])
        )
        response = await client.delete(f"{URL}/{metric['id']}", headers=org.headers)
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "metric_in_use"
        assert f"'Hero ({status})' ({status})" in error["message"]
        assert error["details"][0]["status"] == status
        assert (await client.get(f"{URL}/{metric['id']}", headers=org.headers)).status_code == 200


async def test_metric_rows_sql_for_training(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    await ingest(
        client, org, [event("early", "signup_completed", 1), event("late", "signup_completed", 50)]
    )
    definition = MetricCreate(
        name="m", sql=SIGNUPS + ";", anonymous_id_col="anonymous_id", timestamp_col="timestamp"
    )
    assert "@start_date" not in bind_start_date(definition.sql)
    since = datetime(2026, 6, 16, 10, 30, tzinfo=UTC)
    sql, params = metric_rows_sql(definition, since)
    assert params == [since]
    async with sandbox.tenant_session(conn, org.id) as tenant:
        result = await sandbox.run(tenant, sql, params, limit=100)
    assert [c.name for c in result.columns] == ["anonymous_id", "timestamp", "value"]
    assert [c.type for c in result.columns] == [
        "text",
        "timestamp with time zone",
        "double precision",
    ]
    assert result.rows == [["late", "2026-06-16T10:50:00+00:00", 1.0]]
