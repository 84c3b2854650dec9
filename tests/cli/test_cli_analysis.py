"""``levered optimizations guardrails|progress|lift-history|report-data`` against a real server:
JSON documents, tables, and the errors they exit with."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from tests.cli.conftest import levered
from tests.conftest import Org
from tests.integration.test_guardrails import refund_metric, traffic
from tests.integration.test_training import make_optimization


async def _seeded(conn: asyncpg.Connection, org: Org) -> tuple[UUID, UUID]:
    optimization_id = await make_optimization(conn, org)
    refunds = await refund_metric(conn, org)
    await traffic(conn, org, optimization_id, users=4000, optimized_rate=0.2, holdout_rate=0.1)
    return optimization_id, refunds


async def test_guardrails_set_on_update_then_judged(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    optimization_id, refunds = await _seeded(conn, org)
    spec = (
        f'[{{"metric_id": "{refunds}", "direction": "must_not_increase", '
        '"tolerance_percent": 5, "auto_pause": true}]'
    )
    updated = await levered(
        "optimizations", "update", str(optimization_id), "--guardrails", spec, "--json", env=env
    )
    assert updated.code == 0, updated.stderr
    assert updated.json()["guardrails"][0]["auto_pause"] is True

    judged = await levered("optimizations", "guardrails", str(optimization_id), "--json", env=env)
    assert judged.code == 0, judged.stderr
    body: Any = judged.json()
    assert body["guardrails"][0]["status"] == "violated"
    assert body["paused"] is True and body["status"] == "paused"

    table = await levered("optimizations", "guardrails", str(optimization_id), env=env)
    assert table.code == 0, table.stderr
    assert "violated (auto-pause)" in table.stdout and "Refunds" in table.stdout
    assert "paused automatically" in table.stderr

    shown = await levered("optimizations", "show", str(optimization_id), env=env)
    assert "status_reason" in shown.stdout and "must_not_increase" in shown.stdout


async def test_guardrail_errors_exit_non_zero(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    optimization_id = await make_optimization(conn, org)
    bad = await levered(
        "optimizations", "update", str(optimization_id), "--guardrails", "[{", "--json", env=env
    )
    assert bad.code != 0 and "--guardrails is not valid JSON" in bad.json()["error"]["message"]
    wrong = await levered(
        "optimizations",
        "update",
        str(optimization_id),
        "--guardrails",
        '[{"metric_id": "00000000-0000-0000-0000-000000000000", "direction": "down", '
        '"tolerance_percent": 5}]',
        env=env,
    )
    assert wrong.code != 0 and "$.guardrails[0].direction" in wrong.stderr
    missing = await levered(
        "optimizations", "guardrails", "00000000-0000-0000-0000-000000000000", env=env
    )
    assert missing.code != 0 and "no optimization" in missing.stderr


async def test_progress_and_lift_history(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    optimization_id, _ = await _seeded(conn, org)
    progress = await levered("optimizations", "progress", str(optimization_id), "--json", env=env)
    assert progress.code == 0, progress.stderr
    body: Any = progress.json()
    assert body["leader"] is None and body["optimized_users"] == 3000
    table = await levered("optimizations", "progress", str(optimization_id), env=env)
    assert table.code == 0 and "expected days to decision: unknown" in table.stderr
    bad = await levered(
        "optimizations", "progress", str(optimization_id), "--threshold", "2", env=env
    )
    assert bad.code != 0 and "threshold" in bad.stderr

    history = await levered(
        "optimizations", "lift-history", str(optimization_id), "--json", env=env
    )
    assert history.code == 0, history.stderr
    points = history.json()["points"]
    assert points and points[-1]["cumulative"]["optimized_users"] == 3000
    table = await levered("optimizations", "lift-history", str(optimization_id), env=env)
    assert table.code == 0 and points[0]["date"] in table.stdout


async def test_report_data_is_one_json_document(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    optimization_id, _ = await _seeded(conn, org)
    for flags in (("--json",), ()):
        done = await levered("optimizations", "report-data", str(optimization_id), *flags, env=env)
        assert done.code == 0, done.stderr
        body: Any = done.json()
        assert body["results"]["measured_lift"]["optimized_users"] == 3000
        assert body["guardrails"]["guardrails"] == [] and body["progress"]["leader"] is None
    missing = await levered(
        "optimizations", "report-data", "00000000-0000-0000-0000-000000000000", "--json", env=env
    )
    assert missing.code != 0 and missing.json()["error"]["code"] == "not_found"


async def test_results_by_dimension(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    optimization_id, _ = await _seeded(conn, org)
    done = await levered(
        "optimizations", "results", str(optimization_id), "--dimension", "country", "--json",
        env=env,
    )  # fmt: skip
    assert done.code == 0, done.stderr
    body: Any = done.json()
    assert [d["value"] for d in body["dimension"]["values"]] == ["DE"]
    table = await levered(
        "optimizations", "results", str(optimization_id), "--dimension", "country", env=env
    )
    assert table.code == 0 and "DE" in table.stdout and "COUNTRY" in table.stdout
    bad = await levered(
        "optimizations", "results", str(optimization_id), "--dimension", "platform", env=env
    )
    assert bad.code != 0 and "neither a context factor" in bad.stderr
    # A key the model does not use becomes a dimension: the next pass rebuilds the cells.
    updated = await levered(
        "optimizations", "update", str(optimization_id), "--dimensions", "platform", "--json",
        env=env,
    )  # fmt: skip
    assert updated.code == 0, updated.stderr
    assert updated.json()["dimensions"] == ["platform"]
    shown = await levered("optimizations", "show", str(optimization_id), env=env)
    assert "dimensions" in shown.stdout and "platform" in shown.stdout
    done = await levered(
        "optimizations", "results", str(optimization_id), "--dimension", "platform", "--json",
        env=env,
    )  # fmt: skip
    assert done.code == 0, done.stderr
    values = done.json()["dimension"]["values"]
    assert [d["value"] for d in values] == [None]  # the seeded traffic never sent it
    assert values[0]["exposures"] == sum(d["exposures"] for d in body["dimension"]["values"])
