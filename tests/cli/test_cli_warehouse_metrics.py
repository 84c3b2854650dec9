"""Metrics and warehouse commands, following the seed's sign-up example on the managed tables."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.cli.conftest import levered
from tests.conftest import Org

SIGNUPS = "SELECT anonymous_id, timestamp FROM rewards WHERE name = 'signup_completed'"


async def _seed(conn: asyncpg.Connection, org: Org, other: Org) -> None:
    for owner, prefix in ((org, "mine"), (other, "theirs")):
        await conn.executemany(
            "INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "
            "timestamp) VALUES ($1, $2, 'signup_completed', 1, now() - interval '1 hour')",
            [(owner.id, f"{prefix}-{i}") for i in range(3)],
        )


async def test_metrics_create_list_preview_delete(
    cli_env: dict[str, str], org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    await _seed(conn, org, other_org)
    created = await levered(
        "metrics",
        "create",
        "--name",
        "Sign-ups",
        "--sql",
        SIGNUPS,
        "--anonymous-id-col",
        "anonymous_id",
        "--timestamp-col",
        "timestamp",
        "--json",
        env=env,
    )
    assert created.code == 0, created.stderr
    metric: Any = created.json()
    assert metric["reward_type"] == "bool"

    listed = await levered("metrics", "list", env=env)
    assert "Sign-ups" in listed.stdout

    preview = await levered("metrics", "preview", metric["id"], "--json", env=env)
    ids = sorted(r["anonymous_id"] for r in preview.json()["rows"])
    assert ids == ["mine-0", "mine-1", "mine-2"]

    bad = await levered(
        "metrics",
        "create",
        "--name",
        "x",
        "--sql",
        SIGNUPS,
        "--anonymous-id-col",
        "user_id",
        "--timestamp-col",
        "timestamp",
        env=env,
    )
    assert bad.code == 2 and "user_id" in bad.stderr

    deleted = await levered("metrics", "delete", metric["id"], "-y", env=env)
    assert deleted.code == 0
    gone = await levered("metrics", "show", metric["id"], env=env)
    assert gone.code == 4


async def test_warehouse_commands(
    cli_env: dict[str, str], org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    await _seed(conn, org, other_org)
    status = await levered("warehouse", "status", "--json", env=env)
    assert status.code == 0, status.stderr
    body: Any = status.json()
    assert body["provider"] == "managed"
    assert {t["name"]: t["rows"] for t in body["tables"]}["rewards"] == 3

    columns = await levered("warehouse", "columns", "rewards", env=env)
    assert "anonymous_id" in columns.stdout

    query = await levered(
        "warehouse", "query", "SELECT count(*) AS n FROM rewards", "--json", env=env
    )
    assert query.json()["rows"] == [[3]]

    refused = await levered("warehouse", "query", "DELETE FROM rewards", env=env)
    assert refused.code == 2 and refused.stdout == ""

    preview = await levered("warehouse", "preview", "rewards", "-n", "2", "--json", env=env)
    assert preview.json()["row_count"] == 2
