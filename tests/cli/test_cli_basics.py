"""The CLI as a script would drive it: --json documents on stdout, errors on stderr, exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from tests.cli.conftest import levered
from tests.conftest import Org, make_metric

HERO_FACTORS = (
    '[{"name": "headline", "levels": ["Ship faster", "Build better", "Scale up", '
    '"Go live today", "Start free"]}, {"name": "cta_text", "levels": ["Get started", '
    '"Try it free"]}]'
)


async def _metric(conn: asyncpg.Connection, org: Org) -> str:
    return str(await make_metric(conn, org))


def _keyed(env: dict[str, str], org: Org) -> dict[str, str]:
    return env | {"LEVERED_API_KEY": org.api_key}


async def test_config_set_get_list_and_unknown_keys(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert (await levered("config", "set", "dashboard_refresh", "2", env=cli_env)).code == 0
    got = await levered("config", "get", "dashboard_refresh", "--json", env=cli_env)
    assert got.json() == {"dashboard_refresh": 2.0}
    listed = await levered("config", "list", "--json", env=cli_env)
    assert set(listed.json()) == {"api_url", "dashboard_refresh", "ingest_concurrency"}
    # cli_env sets LEVERED_API_URL: the effective value is the env's, whatever the file says.
    assert (await levered("config", "set", "api_url", "http://file.invalid", env=cli_env)).code == 0
    listed = await levered("config", "list", "--json", env=cli_env)
    assert listed.json()["api_url"] == cli_env["LEVERED_API_URL"]
    table = await levered("config", "list", env=cli_env)
    assert "env LEVERED_API_URL" in table.stdout and "file" in table.stdout
    unset = {k: v for k, v in cli_env.items() if k != "LEVERED_API_URL"}
    from_file = await levered("config", "get", "api_url", "--json", env=unset)
    assert from_file.json() == {"api_url": "http://file.invalid"}
    unknown = await levered("config", "set", "colour", "blue", env=cli_env)
    assert unknown.code == 2 and "known keys" in unknown.stderr and unknown.stdout == ""
    bad = await levered("config", "set", "dashboard_refresh", "soon", env=cli_env)
    assert bad.code == 2 and "float" in bad.stderr


async def test_not_logged_in_is_an_auth_exit(cli_env: dict[str, str]) -> None:
    result = await levered("whoami", env=cli_env)
    assert result.code == 3 and "levered login" in result.stderr and result.stdout == ""


async def test_unreachable_server_is_exit_6(cli_env: dict[str, str], org: Org) -> None:
    env = _keyed(cli_env, org) | {"LEVERED_API_URL": "http://127.0.0.1:9"}
    result = await levered("optimizations", "list", env=env)
    assert result.code == 6 and "cannot reach" in result.stderr


async def test_whoami_with_an_api_key(cli_env: dict[str, str], org: Org) -> None:
    result = await levered("whoami", "--json", env=_keyed(cli_env, org))
    assert result.code == 0, result.stderr
    body: Any = result.json()
    assert body["organization"]["id"] == str(org.id) and body["auth"] == "api_key"
    assert body["scopes"] == ["admin"] and body["role"] is None
    table = await levered("whoami", env=_keyed(cli_env, org))
    assert "scopes           admin" in table.stdout and "role" not in table.stdout


async def test_optimization_lifecycle_from_the_cli(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = _keyed(cli_env, org)
    metric_id = await _metric(conn, org)
    created = await levered(
        "optimizations",
        "create",
        "--name",
        "Landing Page Hero",
        "--design-factors",
        HERO_FACTORS,
        "--reward-metric-id",
        metric_id,
        "--context-factors",
        '[{"name": "country"}, {"name": "device_type"}]',
        "--json",
        env=env,
    )
    assert created.code == 0, created.stderr
    body: Any = created.json()
    assert body["status"] == "live" and body["variants_count"] == 10
    opt_id = body["id"]

    listed = await levered("optimizations", "list", env=env)
    assert "Landing Page Hero" in listed.stdout and "ID" in listed.stdout

    paused = await levered("optimizations", "pause", opt_id, "--json", env=env)
    assert paused.code == 0 and paused.json()["status"] == "paused"
    resumed = await levered("optimizations", "resume", opt_id, "--json", env=env)
    assert resumed.json()["status"] == "live"

    shown = await levered("optimizations", "show", opt_id, env=env)
    assert shown.code == 0 and "model_id" in shown.stdout
    assert body["model"]["id"] in shown.stdout

    unconfirmed = await levered("optimizations", "stop", opt_id, env=env)
    assert unconfirmed.code == 2 and "-y" in unconfirmed.stderr and unconfirmed.stdout == ""
    unconfirmed_update = await levered(
        "optimizations", "update", opt_id, "--status", "completed", env=env
    )
    assert unconfirmed_update.code == 2 and "-y" in unconfirmed_update.stderr
    still = await levered("optimizations", "show", opt_id, "--json", env=env)
    assert still.json()["status"] == "live"
    stopped = await levered("optimizations", "stop", opt_id, "-y", env=env)
    assert stopped.code == 0
    illegal = await levered("optimizations", "update", opt_id, "--status", "live", env=env)
    assert illegal.code == 5 and "allowed" in illegal.stderr and illegal.stdout == ""

    refused = await levered("optimizations", "archive", opt_id, env=env)
    assert refused.code == 2 and "-y" in refused.stderr
    archived = await levered("optimizations", "archive", opt_id, "-y", "--json", env=env)
    assert archived.json()["status"] == "archived"

    missing = await levered(
        "optimizations", "show", "00000000-0000-0000-0000-000000000000", env=env
    )
    assert missing.code == 4


async def test_bad_json_flag_is_a_usage_error(cli_env: dict[str, str], org: Org) -> None:
    result = await levered(
        "optimizations",
        "create",
        "--name",
        "x",
        "--design-factors",
        "[not json",
        "--reward-metric-id",
        "x",
        env=_keyed(cli_env, org),
    )
    assert result.code == 2 and "--design-factors" in result.stderr


async def test_a_missing_required_option_or_argument_is_named(cli_env: dict[str, str]) -> None:
    no_metric = await levered(
        "optimizations", "create", "--name", "x", "--design-factors", "[]", env=cli_env
    )
    assert no_metric.code == 2 and no_metric.stdout == ""
    # Not cyclopts' "parameter --reward-metric-id requires an argument": it was not given.
    assert no_metric.stderr.strip() == (
        "error: optimizations create needs --reward-metric-id (UUID of the reward metric)"
    )
    no_id = await levered("serve", env=cli_env)
    assert no_id.code == 2 and no_id.stderr.strip() == "error: serve needs OPTIMIZATION_ID"
    no_value = await levered(
        "optimizations", "create", "--name", "x", "--design-factors", "[]",
        "--reward-metric-id", env=cli_env,
    )  # fmt: skip
    assert no_value.code == 2 and "requires an argument" in no_value.stderr


async def test_api_keys_create_list_revoke(cli_env: dict[str, str], org: Org) -> None:
    env = _keyed(cli_env, org)
    created = await levered("api-keys", "create", "--label", "ci", "--json", env=env)
    assert created.code == 0, created.stderr
    key: Any = created.json()
    assert key["secret"].startswith("lvk_")
    listed = await levered("api-keys", "list", "--json", env=env)
    assert key["secret"] not in listed.stdout and key["prefix"] in listed.stdout
    revoked = await levered("api-keys", "revoke", key["id"], "-y", env=env)
    assert revoked.code == 0
    with_revoked = await levered("whoami", env=cli_env | {"LEVERED_API_KEY": key["secret"]})
    assert with_revoked.code == 3


async def test_ingest_a_file_with_a_bad_event(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    env = _keyed(cli_env, org)
    lines = [
        {"anonymous_id": f"u{i}", "name": "signup", "value": 1, "timestamp": "2026-11-01T10:00:00Z"}
        for i in range(1200)
    ]
    lines[7]["timestamp"] = "2026-11-01T10:00:00"  # naive: must be rejected
    events = tmp_path / "rewards.ndjson"
    events.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in lines))
    first = await levered("ingest", "rewards", str(events), "--json", env=env)
    assert first.code == 2, first.stderr
    summary: Any = first.json()
    assert (summary["accepted"], summary["rejected"]) == (1199, 1)
    rejected = Path(summary["rejected_file"]).read_text().splitlines()
    assert len(rejected) == 1 and '"position":8' in rejected[0]
    again = await levered("ingest", "rewards", str(events), "--json", env=env)
    assert again.json()["duplicates"] == 1199
    assert await conn.fetchval("SELECT count(*) FROM warehouse.rewards") == 1199


async def test_serve_from_the_cli(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    metric_id = await _metric(conn, org)
    created = await levered(
        "optimizations",
        "create",
        "--name",
        "Hero",
        "--design-factors",
        HERO_FACTORS,
        "--reward-metric-id",
        metric_id,
        "--json",
        env=_keyed(cli_env, org),
    )
    opt_id = created.json()["id"]
    served = await levered("serve", opt_id, "--anonymous-id", "bob", "--json", env=cli_env)
    assert served.code == 0, served.stderr
    body: Any = served.json()
    assert body["anonymous_id"] == "bob" and set(body["variant"]) == {"headline", "cta_text"}
    again = await levered("serve", opt_id, "--anonymous-id", "bob", "--json", env=cli_env)
    assert again.json()["variant_number"] == body["variant_number"]
    table = await levered("serve", opt_id, "--anonymous-id", "bob", env=cli_env)
    assert "variant_number" in table.stdout
    bad = await levered("serve", opt_id, "--context", "[1]", env=cli_env)
    assert bad.code == 2 and "JSON object" in bad.stderr


async def test_observations_from_the_cli(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = _keyed(cli_env, org)
    metric_id = await make_metric(conn, org)
    created = await levered(
        "optimizations",
        "create",
        "--name",
        "Hero",
        "--design-factors",
        HERO_FACTORS,
        "--reward-metric-id",
        str(metric_id),
        "--conversion-window-hours",
        "1",
        "--json",
        env=env,
    )
    opt_id = created.json()["id"]
    await conn.executemany(
        "INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, "
        "variant, variant_number, timestamp) VALUES ($1, $2, $3, $4, 1, "
        "now() - interval '3 hours')",
        [
            (org.id, opt_id, f"u{i}", {"headline": "Ship faster", "cta_text": "Get started"})
            for i in range(5)
        ],
    )
    await conn.execute(
        "INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, timestamp) "
        "VALUES ($1, 'u1', 'signup', now() - interval '170 minutes')",
        org.id,
    )
    listed = await levered(
        "optimizations", "observations", opt_id, "--size", "2", "--json", env=env
    )
    assert listed.code == 0, listed.stderr
    body: Any = listed.json()
    assert body["total"] == 5 and len(body["observations"]) == 2
    everything = await levered("optimizations", "observations", opt_id, "--json", env=env)
    rewards = {o["anonymous_id"]: o["reward"] for o in everything.json()["observations"]}
    assert rewards["u1"] == 1 and sum(rewards.values()) == 1
    table = await levered("optimizations", "observations", opt_id, env=env)
    assert "ANONYMOUS_ID" in table.stdout and "matured" in table.stderr


async def test_update_changes_settings_and_the_design_of_a_draft(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = _keyed(cli_env, org)
    metric_id = await _metric(conn, org)
    created = await levered(
        "optimizations", "create", "--name", "Hero", "--design-factors", HERO_FACTORS,
        "--reward-metric-id", metric_id, "--draft", "--json", env=env,
    )  # fmt: skip
    opt_id = created.json()["id"]
    updated = await levered(
        "optimizations", "update", opt_id, "--holdout-percentage", "20",
        "--excluded-combinations", '[{"cta_text": "Buy"}]',
        "--design-factors", '[{"name": "cta_text", "levels": ["Go", "Try", "Buy"]}]',
        "--model-type", "mab", "--conversion-window-hours", "2", "--no-sticky", "--json",
        env=env,
    )  # fmt: skip
    assert updated.code == 0, updated.stderr
    body: Any = updated.json()
    assert body["holdout_percentage"] == 20 and body["model_type"] == "mab"
    assert body["variants_count"] == 2 and body["sticky"] is False  # 3 minus the excluded one
    assert body["excluded_combinations"] == [{"cta_text": "Buy"}]
    assert body["attribution"]["conversion_window_hours"] == 2
    assert body["design_factors"][0]["levels"] == ["Go", "Try", "Buy"]
    assert (await levered("optimizations", "update", opt_id, "--status", "live", env=env)).code == 0
    frozen = await levered(
        "optimizations", "update", opt_id, "--design-factors",
        '[{"name": "cta_text", "levels": ["Go", "Try"]}]', env=env,
    )  # fmt: skip
    assert frozen.code == 5 and frozen.stdout == ""
    holdout = await levered(
        "optimizations", "update", opt_id, "--holdout-percentage", "5", "--json", env=env
    )
    assert holdout.code == 0 and holdout.json()["holdout_percentage"] == 5


async def test_empty_lists_say_how_to_start(cli_env: dict[str, str], org: Org) -> None:
    """A new organization's lists: the header alone on stdout (scripts), the next step on
    stderr; with rows there is no hint."""
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    for command, hint in (
        ("metrics", "no metrics yet: create one with `levered metrics create`"),
        ("optimizations", "no optimizations yet: create one with `levered optimizations create`"),
        ("models", "no models yet"),
    ):
        listed = await levered(command, "list", env=env)
        assert listed.code == 0, listed.stderr
        assert len(listed.stdout.splitlines()) == 1 and hint in listed.stderr
    created = await levered(
        "metrics", "create", "--name", "Sign-ups", "--sql",
        "SELECT anonymous_id, timestamp FROM rewards", "--anonymous-id-col", "anonymous_id",
        "--timestamp-col", "timestamp", env=env,
    )  # fmt: skip
    assert created.code == 0, created.stderr
    assert "no metrics yet" not in (await levered("metrics", "list", env=env)).stderr
