"""``levered models train ID --bias FACTOR=B …`` against a real server: the body it sends, its
output, and its usage errors."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.cli.conftest import levered
from tests.conftest import Org, make_metric

FACTORS = (
    '[{"name": "headline", "levels": ["a", "b", "c"]}, {"name": "cta", "levels": ["go", "try"]}]'
)


async def _seed(conn: asyncpg.Connection, org: Org, opt_id: str) -> None:
    exposures, rewards = [], []
    for i in range(600):
        number = 1 + i % 6
        variant = {"headline": "abc"[(number - 1) // 2], "cta": ("go", "try")[(number - 1) % 2]}
        exposures.append((org.id, opt_id, f"u{i}", variant, number))
        if i % (3 + number) == 0:
            rewards.append((org.id, f"u{i}"))
    await conn.executemany(
        "INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, "
        "variant, variant_number, timestamp) VALUES ($1, $2, $3, $4, $5, "
        "now() - interval '3 hours')",
        exposures,
    )
    await conn.executemany(
        "INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, timestamp) "
        "VALUES ($1, $2, 'signup', now() - interval '170 minutes')",
        rewards,
    )


async def test_train_with_bias(cli_env: dict[str, str], org: Org, conn: asyncpg.Connection) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    metric = await make_metric(conn, org)
    created = await levered(
        "optimizations",
        "create",
        "--name",
        "Hero",
        "--design-factors",
        FACTORS,
        "--reward-metric-id",
        str(metric),
        "--conversion-window-hours",
        "1",
        "--json",
        env=env,
    )
    assert created.code == 0, created.stderr
    body: Any = created.json()
    opt_id, model_id = body["id"], body["model"]["id"]
    await _seed(conn, org, opt_id)

    trained = await levered(
        "models", "train", model_id, "--bias", "headline=0.5", "--bias", "cta=0.2", "--json",
        env=env,
    )  # fmt: skip
    assert trained.code == 0, trained.stderr
    version: Any = trained.json()
    assert version["version"] == 1 and version["bias"] == {"headline": 0.5, "cta": 0.2}

    state = await levered("models", "state", model_id, env=env)
    assert state.code == 0 and "(bias: cta=0.2, headline=0.5)" in state.stderr

    again = await levered("models", "train", model_id, env=env)  # kept without --bias
    assert again.code == 0 and "trained version 2 (bias: cta=0.2, headline=0.5)" in again.stderr
    cleared = await levered("models", "train", model_id, "--clear-bias", "--json", env=env)
    assert cleared.code == 0 and cleared.json()["bias"] is None

    for bad in (["--bias", "headline"], ["--bias", "headline=lots"], ["--bias", "=1"]):
        refused = await levered("models", "train", model_id, *bad, env=env)
        assert refused.code == 2 and "--bias" in refused.stderr, refused.stderr
    both = await levered("models", "train", model_id, "--bias", "cta=1", "--clear-bias", env=env)
    assert both.code == 2 and "--clear-bias" in both.stderr
    unknown = await levered("models", "train", model_id, "--bias", "colour=1", env=env)
    assert unknown.code == 2 and "$.bias.colour" in unknown.stderr, unknown.stderr
    too_big = await levered("models", "train", model_id, "--bias", "cta=11", "--json", env=env)
    assert too_big.code == 2 and "from 0 to 10" in too_big.stderr
    assert too_big.json()["error"]["code"] == "validation_error"  # --json: the error on stdout
    listed: Any = (await levered("models", "list", "--json", env=env)).json()
    assert listed["models"][0]["current_version"] == 3  # no refused call trained anything
