"""``levered metrics create --outcomes … --name-col …``: a weighted metric from the command line,
its outcomes shown back, and bad outcomes refused with the field named (exit 2)."""

from __future__ import annotations

import json
from typing import Any

from tests.cli.conftest import levered
from tests.conftest import Org

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
