"""Training, model state and results from the CLI, on simulated data with a planted winner."""

from __future__ import annotations

import random
from typing import Any

import asyncpg

from tests.cli.conftest import levered
from tests.conftest import Org, make_metric

FACTORS = '[{"name": "headline", "levels": ["a", "b", "c"]}]'
RATES = {1: 0.05, 2: 0.30, 3: 0.05}


async def _seed(conn: asyncpg.Connection, org: Org, opt_id: str) -> None:
    rng = random.Random(7)
    exposures, rewards = [], []
    for i in range(900):
        number = rng.choice([1, 2, 3])
        user = f"u{i}"
        exposures.append(
            (org.id, opt_id, user, {"headline": "abc"[number - 1]}, number, i % 10 == 0)
        )
        if rng.random() < RATES[number]:
            rewards.append((org.id, user))
    await conn.executemany(
        "INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, "
        "variant, variant_number, holdout, timestamp) VALUES ($1, $2, $3, $4, $5, $6, "
        "now() - interval '3 hours')",
        exposures,
    )
    await conn.executemany(
        "INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, timestamp) "
        "VALUES ($1, $2, 'signup', now() - interval '170 minutes')",
        rewards,
    )


async def test_train_state_results(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    metric = await make_metric(conn, org)
    created = await levered(
        "optimizations",
        "create",
        "--name",
        "Headlines",
        "--design-factors",
        FACTORS,
        "--reward-metric-id",
        str(metric),
        "--model-type",
        "mab",
        "--conversion-window-hours",
        "1",
        "--json",
        env=env,
    )
    body: Any = created.json()
    opt_id, model_id = body["id"], body["model"]["id"]
    no_data = await levered("optimizations", "results", opt_id, env=env)
    assert no_data.code == 0, no_data.stderr
    # No users in either arm: no lift is claimed (it used to print "+0.00%").
    assert "measured lift vs holdout: - (interval once both arms have 100 users)" in (
        no_data.stderr
    )
    await _seed(conn, org, opt_id)

    untrained = await levered("models", "state", model_id, "--json", env=env)
    assert untrained.json()["version"] is None

    trained = await levered("models", "train", model_id, "--json", env=env)
    assert trained.code == 0, trained.stderr
    assert trained.json()["version"] == 1

    state: Any = (await levered("models", "state", model_id, "--json", env=env)).json()
    best = max(state["variants"], key=lambda v: v["prob_best"])
    assert best["number"] == 2
    if state["kind"].startswith("laplace"):
        assert state["prior_scales"] and all(v > 0 for v in state["prior_scales"].values())

    listed = await levered("models", "list", env=env)
    assert "Headlines" in listed.stdout and "trained" in listed.stdout
    summary = (await levered("optimizations", "list", "--json", env=env)).json()["optimizations"][
        0
    ]["summary"]
    assert summary["lift"] is not None
    mark = "" if summary["lift_source"] == "measured" else "~"
    table = await levered("optimizations", "list", env=env)
    assert f" {mark}{summary['lift']:+,.1f}% " in table.stdout, table.stdout

    results = await levered("optimizations", "results", opt_id, env=env)
    assert results.code == 0, results.stderr
    assert "measured lift vs holdout" in results.stderr and "PROB_BEST" in results.stdout
    as_json: Any = (await levered("optimizations", "results", opt_id, "--json", env=env)).json()
    assert sum(v["exposures"] for v in as_json["variants"]) == 900
    lift = as_json["measured_lift"]
    assert (lift["optimized_users"], lift["holdout_users"]) == (810, 90)
    shown = "-" if lift["lift_percent"] is None else f"{lift['lift_percent']:+.2f}%"
    assert f"measured lift vs holdout: {shown} (" in results.stderr

    for_context = await levered(
        "optimizations", "results", opt_id, "--context", '{"country": "US"}', "--json", env=env
    )
    assert for_context.json()["context"] == {"country": "US"}
    bad_context = await levered("models", "state", model_id, "--context", "[1]", env=env)
    assert bad_context.code == 2 and "context" in bad_context.stderr

    windowed = await levered(
        "optimizations", "update", opt_id, "--window-days", "7", "--json", env=env
    )
    assert windowed.code == 0, windowed.stderr
    assert windowed.json()["training_window"] == {"type": "days", "days": 7.0}
    both = await levered(
        "optimizations", "update", opt_id, "--window-days", "7", "--all-history", env=env
    )
    assert both.code == 2 and "exclude each other" in both.stderr
    rebuilt = await levered("models", "train", model_id, "--rebuild", env=env)
    assert rebuilt.code == 0, rebuilt.stderr
    assert "trained version 2; trained on the last 7 days, data through" in rebuilt.stderr
    shown = await levered("models", "state", model_id, env=env)
    assert "data through" in shown.stderr
    if state["kind"].startswith("laplace"):
        assert "prior scales learned from the data" in shown.stderr

    deleted = await levered("models", "delete", model_id, "-y", env=env)
    assert deleted.code == 0
    assert (await levered("models", "state", model_id, env=env)).code == 4
