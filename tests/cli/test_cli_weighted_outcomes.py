"""``levered metrics create --outcomes … --name-col …``: a weighted metric from the command line,
its outcomes shown back, bad outcomes refused with the field named (exit 2), and the outcome mix
per variant in ``levered optimizations results``."""

from __future__ import annotations

import json
import re
from typing import Any
from uuid import UUID

import asyncpg

from tests.cli.conftest import levered
from tests.conftest import Org
from tests.integration.test_weighted_outcomes import make_optimization, simulate

EVENTS = "SELECT anonymous_id, timestamp, name FROM rewards"
OUTCOMES = [
    {"key": "add_to_cart", "weight": 0.1, "match": {"by": "name", "value": "add_to_cart"}},
    {"key": "purchase", "weight": 1, "match": {"by": "name", "value": "purchase"}},
]


def create_args(outcomes: str, *extra: str) -> list[str]:
    return [
        "metrics",
        "create",
        "--name",
        "Checkout value",
        "--sql",
        EVENTS,
        "--anonymous-id-col",
        "anonymous_id",
        "--timestamp-col",
        "timestamp",
        "--outcomes",
        outcomes,
        *extra,
    ]


async def test_metrics_create_with_outcomes(cli_env: dict[str, str], org: Org) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    created = await levered(
        *create_args(json.dumps(OUTCOMES), "--name-col", "name", "--json"), env=env
    )
    assert created.code == 0, created.stderr
    metric: Any = created.json()
    assert metric["reward_type"] == "weighted" and metric["name_col"] == "name"
    assert [o["key"] for o in metric["outcomes"]] == ["add_to_cart", "purchase"]
    assert metric["outcomes"][1]["weight"] == 1.0

    shown = await levered("metrics", "show", metric["id"], env=env)
    assert shown.code == 0, shown.stderr
    assert "purchase" in shown.stdout and "add_to_cart" in shown.stdout
    as_json = await levered("metrics", "show", metric["id"], "--json", env=env)
    assert as_json.json()["outcomes"] == metric["outcomes"]

    no_name_col = await levered(*create_args(json.dumps(OUTCOMES)), env=env)
    assert no_name_col.code == 2 and "$.name_col" in no_name_col.stderr

    twice = [OUTCOMES[0], {**OUTCOMES[1], "key": "add_to_cart"}]
    duplicate = await levered(*create_args(json.dumps(twice), "--name-col", "name"), env=env)
    assert duplicate.code == 2 and "$.outcomes[1].key" in duplicate.stderr

    not_json = await levered(*create_args("[{", "--name-col", "name"), env=env)
    assert not_json.code == 2 and "--outcomes is not valid JSON" in not_json.stderr

    listed = await levered("metrics", "list", "--json", env=env)
    assert [m["id"] for m in listed.json()["metrics"]] == [metric["id"]]


async def test_results_show_the_outcome_mix(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    created = await levered(
        *create_args(json.dumps(OUTCOMES), "--name-col", "name", "--json"), env=env
    )
    assert created.code == 0, created.stderr
    optimization_id = await make_optimization(conn, org, UUID(created.json()["id"]))
    planted = await simulate(conn, org, optimization_id, users=600)
    model_id = await conn.fetchval(
        "SELECT id FROM models WHERE optimization_id = $1", optimization_id
    )
    trained = await levered("models", "train", str(model_id), "--json", env=env)
    assert trained.code == 0, trained.stderr

    shown = await levered("optimizations", "results", str(optimization_id), env=env)
    assert shown.code == 0, shown.stderr
    for number, counts in planted.items():
        for key in ("add_to_cart", "purchase", "failure"):
            assert re.search(rf"\b{number}\s+{key}\s+\S+\s+{counts[key]}\b", shown.stdout), (
                number,
                key,
                shown.stdout,
            )
    as_json = await levered("optimizations", "results", str(optimization_id), "--json", env=env)
    mix = {v["number"]: v["outcomes"] for v in as_json.json()["variants"]}
    assert {n: [o["exposures"] for o in m] for n, m in mix.items()} == {
        n: [c["add_to_cart"], c["purchase"], c["failure"]] for n, c in planted.items()
    }
