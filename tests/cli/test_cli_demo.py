"""`levered demo` simulates real traffic through the HTTP API."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg

from tests.cli.conftest import levered
from tests.conftest import Org


async def test_demo_without_dashboard_drives_real_traffic(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    result = await levered("demo", "--no-dashboard", "--duration", "3", "--json", env=env)
    assert result.code == 0, result.stderr
    summary: Any = result.json()
    assert summary["served"] > 0 and summary["errors"] == []
    exposures = -1
    for _ in range(50):  # the server's exposure buffer flushes on a short timer
        exposures = await conn.fetchval(
            "SELECT count(*) FROM warehouse.exposures WHERE optimization_id = $1",
            summary["optimization_id"],
        )
        if exposures == summary["served"]:
            break
        await anyio.sleep(0.1)
    assert exposures == summary["served"]
    rewards = await conn.fetchval(
        "SELECT count(*) FROM warehouse.rewards WHERE organization_id = $1 "
        "AND name = 'demo_signup'",
        org.id,
    )
    assert rewards == summary["conversions"]
    again = await levered("demo", "--no-dashboard", "--duration", "1", "--json", env=env)
    assert again.json()["optimization_id"] == summary["optimization_id"]
