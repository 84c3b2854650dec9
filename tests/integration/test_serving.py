"""Serving against the real app and database: statuses, stickiness, holdout, exposures,
dry runs, replay, context validation, errors, keys and the rate limit, shutdown flushing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from levered.bandit.cells import Cells
from levered.bandit.glm import fit_cmab
from levered.bandit.mab import fit_mab
from levered.bandit.posterior import Posterior
from levered.bandit.sampler import Sampler
from levered.bandit.variants import VariantSpace
from levered.db.pool import create_pool
from levered.server.app import create_app
from levered.services.exposure_buffer import ExposureBuffer
from levered.services.serving import replay
from levered.settings import Settings
from tests.conftest import Org
from tests.integration.test_me import access_token, bearer

# Marked here (not only by conftest's hook) so that parametrized async tests keep their params.
pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Any]
API = "/api/v2/optimizations"
FACTORS = [
    {"name": "headline", "levels": ["Ship faster", "Build better", "Scale up", "Go live", "Free"]},
    {"name": "cta", "levels": ["Get started", "Try it"]},
]
CONTEXT = [{"name": "country"}, {"name": "mobile", "dtype": "bool"}]
SPACE = VariantSpace.of(FACTORS)


# -- helpers (shared with the other serving tests) ----------------------------------------------


@pytest.fixture
def settings(db_url: str) -> Settings:
    """conftest's settings without the serve rate limit (these tests serve in bursts)."""
    return Settings(
        database_url=db_url,
        pool_min_size=1,
        pool_max_size=5,
        log_level="warning",
        serve_rate_limit=0,
    )


async def insert_metric(conn: asyncpg.Connection, org: Org) -> UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
        "reward_type) VALUES ($1, 'signups', 'SELECT anonymous_id, ts FROM s', 'anonymous_id', "
        "'ts', 'bool') RETURNING id",
        org.id,
    )


def definition(metric: UUID, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "Hero",
        "design_factors": FACTORS,
        "context_factors": CONTEXT,
        "reward_metric_id": str(metric),
        "holdout_percentage": 0,
        **overrides,
    }


async def create(client: Client, conn: asyncpg.Connection, org: Org, **overrides: Any) -> str:
    metric = await insert_metric(conn, org)
    response = await client.post(API, json=definition(metric, **overrides), headers=org.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def mab_preferring(best: int, n_variants: int = SPACE.size) -> Posterior:
    """A Beta posterior that is nearly certain variant ``best`` converts best."""
    numbers = np.arange(1, n_variants + 1)
    count = np.full(n_variants, 5000.0)
    successes = np.where(numbers == best, 2500.0, 50.0)
    return fit_mab(Cells.of(numbers, count, successes), (5, 2), "bool")


def cmab_with_context(seed: int = 3) -> Posterior:
    rng = np.random.default_rng(seed)
    numbers = np.tile(np.arange(1, SPACE.size + 1), 2)
    ctx = np.repeat([0, 1], SPACE.size)
    count = np.full(numbers.size, 300.0)
    successes = rng.binomial(300, rng.uniform(0.05, 0.3, numbers.size)).astype(float)
    contexts = [{"country": "DE"}, {"country": "FR"}]
    return fit_cmab(
        Cells.of(numbers, count, successes, context_index=ctx, contexts=contexts), (5, 2), "bool"
    )


async def train(
    conn: asyncpg.Connection, optimization_id: str, posterior: Posterior, version: int = 1
) -> None:
    """What the training service does: a model_versions row, then current_version."""
    model_id, org_id = await conn.fetchrow(
        "SELECT id, organization_id FROM models WHERE optimization_id = $1 AND deleted_at IS NULL",
        UUID(optimization_id),
    )
    await conn.execute(
        "INSERT INTO model_versions (model_id, version, organization_id, kind, posterior, "
        "window_start, window_end, counts, seed) VALUES ($1, $2, $3, $4, $5, NULL, now(), "
        "'{}', 7)",
        model_id,
        version,
        org_id,
        posterior.kind,
        posterior.encode(),
    )
    await conn.execute(
        "UPDATE models SET current_version = $2, status = 'trained' WHERE id = $1",
        model_id,
        version,
    )


async def set_status(conn: asyncpg.Connection, optimization_id: str, status: str) -> None:
    await conn.execute(
        "UPDATE optimizations SET status = $2 WHERE id = $1", UUID(optimization_id), status
    )


async def serve(client: Client, optimization_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"{API}/{optimization_id}/serve", json=body)
    assert response.status_code == 200, response.text
    out: dict[str, Any] = response.json()
    return out


async def eventually(check: Any, within: float = 3.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.02)


async def exposures(conn: asyncpg.Connection, optimization_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM warehouse.exposures WHERE optimization_id = $1 ORDER BY received_at",
        UUID(optimization_id),
    )


async def wait_for_exposures(
    conn: asyncpg.Connection, optimization_id: str, n: int
) -> list[asyncpg.Record]:
    async def enough() -> list[asyncpg.Record] | None:
        rows = await exposures(conn, optimization_id)
        return rows if len(rows) >= n else None

    rows = await eventually(enough)
    assert rows is not None, f"fewer than {n} exposures arrived"
    return rows  # type: ignore[no-any-return]


async def reloaded(client: Client, optimization_id: str, check: Any) -> dict[str, Any]:
    """Serve (dry run) until ``check(body)`` holds: the LISTEN reload is asynchronous."""

    async def attempt() -> dict[str, Any] | None:
        body = await serve(client, optimization_id, anonymous_id=str(uuid4()), dry_run=True)
        return body if check(body) else None

    found = await eventually(attempt)
    assert found is not None, "the change never reached serving"
    return found  # type: ignore[no-any-return]


# -- live ---------------------------------------------------------------------------------------


async def test_untrained_live_serves_uniformly_and_records_the_exposure(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org)
    body = await serve(client, opt, anonymous_id="user-1", context={"country": "DE"})
    assert body["optimization_id"] == opt
    assert body["anonymous_id"] == "user-1"
    assert body["model_version"] is None
    assert body["holdout"] is False
    assert body["propensity"] == pytest.approx(1 / SPACE.size)
    number = body["variant_number"]
    assert body["variant"] == SPACE.variant(number)
    assert body["variant_key"] == SPACE.key(number)
    assert body["meta"]["organization_id"] == str(org.id)
    [row] = await wait_for_exposures(conn, opt, 1)
    assert row["organization_id"] == org.id
    assert row["anonymous_id"] == "user-1"
    assert row["variant_number"] == number
    assert row["variant"] == SPACE.variant(number)
    assert row["context"] == {"country": "DE"}
    assert row["propensity"] == pytest.approx(1 / SPACE.size)
    assert row["decision_id"] == UUID(body["decision_id"])
    assert row["model_version"] is None
    assert row["holdout"] is False

    seen = Counter(
        [
            (await serve(client, opt, anonymous_id=f"u{i}", dry_run=True))["variant_number"]
            for i in range(200)
        ]
    )
    assert set(seen) == set(range(1, SPACE.size + 1))  # uniform: every variant comes up


async def test_missing_anonymous_id_gets_a_random_sticky_one(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org)
    first = await serve(client, opt)
    assert len(first["anonymous_id"]) == 32
    again = await serve(client, opt, anonymous_id=first["anonymous_id"])
    assert again["decision_id"] == first["decision_id"]
    assert again["variant_number"] == first["variant_number"]

    async def stored() -> bool:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM assignments WHERE anonymous_id = $1", first["anonymous_id"]
            )
        )

    assert await eventually(stored)


async def test_sticky_users_keep_their_decision_until_the_optimization_leaves_live(
    settings: Settings, client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org)
    firsts = {f"user-{i}": await serve(client, opt, anonymous_id=f"user-{i}") for i in range(30)}
    assert len({b["variant_number"] for b in firsts.values()}) > 1
    await train(conn, opt, mab_preferring(7))  # a new model does not move assigned users
    await reloaded(client, opt, lambda b: b["model_version"] == 1)
    for user, first in firsts.items():
        again = await serve(client, opt, anonymous_id=user)
        assert again["variant_number"] == first["variant_number"]
        assert again["decision_id"] == first["decision_id"]
        assert again["propensity"] == first["propensity"]
        assert again["model_version"] is None  # the decision was made before training
    rows = await conn.fetch(
        "SELECT anonymous_id, variant_number, decision_id FROM assignments "
        "WHERE optimization_id = $1",
        UUID(opt),
    )
    assert {r["anonymous_id"]: r["variant_number"] for r in rows} == {
        u: b["variant_number"] for u, b in firsts.items()
    }

    # Another process (empty in-memory cache) reads the same assignments from the database.
    async with AsyncTestClient(create_app(settings)) as other:
        for user, first in list(firsts.items())[:5]:
            again = await serve(other, opt, anonymous_id=user)
            assert again["decision_id"] == first["decision_id"]

    # Leaving live ends stickiness: paused serves the baseline, and back in live users get
    # fresh decisions from the current model (which prefers 7).
    await set_status(conn, opt, "paused")
    await reloaded(client, opt, lambda b: b["variant_number"] == 1 and b["propensity"] == 1.0)
    await set_status(conn, opt, "live")
    await reloaded(client, opt, lambda b: b["variant_number"] == 7)
    redecided = [await serve(client, opt, anonymous_id=user) for user in firsts]
    assert all(b["decision_id"] != firsts[b["anonymous_id"]]["decision_id"] for b in redecided)
    assert all(b["model_version"] == 1 for b in redecided)
    assert Counter(b["variant_number"] for b in redecided)[7] >= 25


async def test_not_sticky_stores_no_assignment(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org, sticky=False)
    decisions = {(await serve(client, opt, anonymous_id="same"))["decision_id"] for _ in range(5)}
    assert len(decisions) == 5
    await wait_for_exposures(conn, opt, 5)
    assert await conn.fetchval("SELECT count(*) FROM assignments") == 0


async def test_holdout_users_get_the_baseline_with_the_mixed_propensity(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org, holdout_percentage=50)
    await train(conn, opt, mab_preferring(7))
    bodies = [await serve(client, opt, anonymous_id=f"h{i}", dry_run=True) for i in range(400)]
    held = [b for b in bodies if b["holdout"]]
    assert 140 <= len(held) <= 260  # 50 % ± 6 sd
    assert all(b["variant_number"] == 1 for b in held)
    served = [b for b in bodies if not b["holdout"]]
    assert Counter(b["variant_number"] for b in served).most_common(1)[0][0] == 7
    # P(v) = h·[v = 1] + (1 − h)·p_TS(v): the baseline is nearly never Thompson's pick here.
    assert held[0]["propensity"] == pytest.approx(0.5 + 0.5 * 0.0005, abs=1e-3)
    sevens = [b for b in served if b["variant_number"] == 7]
    assert sevens[0]["propensity"] == pytest.approx(0.5, abs=0.01)
    # Stable: the same user is in (or out of) the holdout every time.
    again = await serve(client, opt, anonymous_id=held[0]["anonymous_id"], dry_run=True)
    assert again["holdout"] is True


async def test_trained_live_serves_thompson_draws_that_replay(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org, excluded_combinations=[{"headline": "Scale up"}])
    posterior = cmab_with_context()
    await train(conn, opt, posterior)
    await reloaded(client, opt, lambda b: b["model_version"] == 1)
    bodies = [
        await serve(client, opt, anonymous_id=f"r{i}", context={"country": c, "mobile": i % 2 == 0})
        for i, c in enumerate(["DE", "FR", "US"] * 20)
    ]
    excluded = {n for n in range(1, SPACE.size + 1) if SPACE.variant(n)["headline"] == "Scale up"}
    assert not {b["variant_number"] for b in bodies} & excluded
    rows = await wait_for_exposures(conn, opt, len(bodies))

    # Replay each decision from what was stored: the model version's posterior, the
    # allowed variants, the decision id and the recorded context.
    stored = await conn.fetchval(
        "SELECT posterior FROM model_versions mv JOIN models m ON m.id = mv.model_id "
        "WHERE m.optimization_id = $1 AND mv.version = 1",
        UUID(opt),
    )
    mask = SPACE.allowed_mask([{"headline": "Scale up"}])
    sampler = Sampler(Posterior.decode(stored), mask, 1)
    allowed = np.flatnonzero(mask).astype(np.int64)
    for row in rows:
        assert row["model_version"] == 1
        assert 0 < row["propensity"] <= 1
        again = replay(sampler, allowed, row["model_version"], row["decision_id"], row["context"])
        assert again == row["variant_number"]


async def test_untrained_decisions_replay_too(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org)
    allowed = np.arange(SPACE.size, dtype=np.int64)
    for i in range(20):
        body = await serve(client, opt, anonymous_id=f"x{i}", dry_run=True)
        assert replay(None, allowed, None, UUID(body["decision_id"])) == body["variant_number"]


# -- other statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["draft", "archived"])
async def test_draft_and_archived_are_not_live(
    client: Client, conn: asyncpg.Connection, org: Org, status: str
) -> None:
    opt = await create(client, conn, org, draft=True)
    if status == "archived":
        await set_status(conn, opt, "archived")
    for response in (
        await client.post(f"{API}/{opt}/serve", json={"anonymous_id": "a"}),
        await client.post(f"{API}/best-variant", json={"optimization_id": opt}),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "not_live"


async def test_paused_serves_the_baseline_to_everyone(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org, holdout_percentage=30)
    await train(conn, opt, mab_preferring(7))
    await set_status(conn, opt, "paused")
    for i in range(30):
        body = await serve(client, opt, anonymous_id=f"p{i}")
        assert (body["variant_number"], body["propensity"], body["holdout"]) == (1, 1.0, False)
    rows = await wait_for_exposures(conn, opt, 30)
    assert {r["variant_number"] for r in rows} == {1}
    assert await conn.fetchval("SELECT count(*) FROM assignments") == 0


@pytest.mark.parametrize("status", ["shipped", "completed"])
async def test_shipped_and_completed_serve_the_winner(
    client: Client, conn: asyncpg.Connection, org: Org, status: str
) -> None:
    opt = await create(client, conn, org, holdout_percentage=30)
    await set_status(conn, opt, status)
    body = await serve(client, opt, anonymous_id="before-training")
    assert body["variant_number"] == 1  # no model yet: the baseline is the best we know
    await train(conn, opt, mab_preferring(4))
    await reloaded(client, opt, lambda b: b["variant_number"] == 4)
    for i in range(20):
        body = await serve(client, opt, anonymous_id=f"s{i}")
        assert (body["variant_number"], body["propensity"], body["holdout"]) == (4, 1.0, False)
        assert body["model_version"] == 1


async def test_shipped_cmab_winner_depends_on_the_context(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org)
    posterior = cmab_with_context()
    await train(conn, opt, posterior)
    await set_status(conn, opt, "shipped")
    await reloaded(client, opt, lambda b: b["model_version"] == 1)
    mean_scores = {}
    from levered.bandit.design import levels_matrix
    from levered.bandit.glm import design_of

    design = design_of(posterior)
    theta = posterior.array("mean")
    levels = levels_matrix(design.level_counts)
    for country in ("DE", "FR"):
        cols = design.context_columns({"country": country})
        active = design.active_columns(levels, np.tile(cols, (levels.shape[0], 1)))
        scores = design.dense(active) @ theta
        mean_scores[country] = int(np.argmax(scores)) + 1
    for country, expected in mean_scores.items():
        body = await serve(client, opt, anonymous_id="c", context={"country": country})
        assert body["variant_number"] == expected


# -- dry run, context, errors -------------------------------------------------------------------


async def test_dry_run_writes_nothing(client: Client, conn: asyncpg.Connection, org: Org) -> None:
    opt = await create(client, conn, org)
    first = await serve(client, opt, anonymous_id="dry", dry_run=True)
    for _ in range(5):
        await serve(client, opt, anonymous_id="dry", dry_run=True)
        await serve(client, opt, dry_run=True)
    await asyncio.sleep(0.3)  # several flush intervals
    await client.app.state.serving.buffer.flush()
    assert await exposures(conn, opt) == []
    assert await conn.fetchval("SELECT count(*) FROM assignments") == 0
    # A dry run does not reserve the decision: the real serve decides afresh and sticks.
    real = await serve(client, opt, anonymous_id="dry")
    assert real["decision_id"] != first["decision_id"]
    peek = await serve(client, opt, anonymous_id="dry", dry_run=True)
    assert peek["decision_id"] == real["decision_id"]


async def test_context_keys_are_checked_against_the_context_factors(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org)
    body = await serve(client, opt, anonymous_id="ctx", context={"country": "DE", "mobile": True})
    [row] = await wait_for_exposures(conn, opt, 1)
    assert row["context"] == {"country": "DE", "mobile": True}
    assert body["variant_number"] >= 1
    for context, key in (({"country": 3}, "country"), ({"mobile": "yes"}, "mobile")):
        response = await client.post(f"{API}/{opt}/serve", json={"context": context})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert key in error["message"]
        assert error["details"][0]["path"] == f"$.context.{key}"
    assert (await client.post(f"{API}/{opt}/serve", json={"context": {"country": None}})).is_success


async def test_an_unknown_context_key_is_refused_naming_it_and_the_factors(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    # A typo ("mobil" for "mobile") would otherwise switch personalization off unnoticed.
    opt = await create(client, conn, org)
    for context in ({"country": "DE", "mobil": True}, {"mobil": None}):
        for url, body in (
            (f"{API}/{opt}/serve", {"anonymous_id": "typo", "context": context}),
            (f"{API}/best-variant", {"optimization_id": opt, "context": context}),
        ):
            response = await client.post(url, json=body)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "validation_error"
            assert "'mobil'" in error["message"]
            assert "country, mobile" in error["message"]
            assert error["details"] == [
                {
                    "path": "$.context.mobil",
                    "message": "not a context factor of this optimization",
                    "context_factors": ["country", "mobile"],
                }
            ]
    # Without context factors, any key is unknown.
    bare = await create(client, conn, org, context_factors=[])
    response = await client.post(f"{API}/{bare}/serve", json={"context": {"country": "DE"}})
    assert response.status_code == 400, response.text
    assert "no context factors" in response.json()["error"]["message"]
    # Nothing of a refused serve was recorded (exposures are written in serve order).
    await serve(client, opt, anonymous_id="after")
    assert [r["anonymous_id"] for r in await wait_for_exposures(conn, opt, 1)] == ["after"]
    assert await exposures(conn, bare) == []


async def test_a_nul_in_a_served_string_is_a_400_naming_the_field(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    # PostgreSQL text and jsonb cannot hold U+0000: serving used to fail in the sticky claim
    # (a 500) or leave an exposure that no flush could ever write.
    opt = await create(client, conn, org)
    for body, path in (
        ({"anonymous_id": "a\u0000b"}, "$.anonymous_id"),
        ({"anonymous_id": "a\u0000b", "dry_run": True}, "$.anonymous_id"),
        ({"anonymous_id": "ok", "context": {"country": "D\u0000E"}}, "$.context.country"),
    ):
        for url, sent in (
            (f"{API}/{opt}/serve", body),
            (f"{API}/best-variant", {**body, "optimization_id": opt}),
        ):
            response = await client.post(url, json=sent)  # sent as the escape \\u0000
            assert response.status_code == 400, (sent, response.text)
            error = response.json()["error"]
            assert error["details"][0]["path"] == path
            assert "U+0000" in error["message"]
    await serve(client, opt, anonymous_id="after")
    assert [r["anonymous_id"] for r in await wait_for_exposures(conn, opt, 1)] == ["after"]
    assert await conn.fetchval("SELECT array_agg(anonymous_id) FROM assignments") == ["after"]


async def test_unknown_optimizations_and_bad_bodies(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    missing = uuid4()
    response = await client.post(f"{API}/{missing}/serve", json={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = await client.post(f"{API}/best-variant", json={"optimization_id": str(missing)})
    assert response.status_code == 404
    assert (await client.post(f"{API}/best-variant", json={})).status_code == 400
    opt = await create(client, conn, org)
    assert (await client.post(f"{API}/{opt}/serve")).status_code == 200  # no body at all
    for bad in ({"anonymous_id": ""}, {"anonymous_id": "x" * 513}, {"surprise": 1}):
        response = await client.post(f"{API}/{opt}/serve", json=bad)
        assert response.status_code == 400, (bad, response.text)
    # A just-created optimization is found at once (creation notifies, no stale 404).
    fresh = await create(client, conn, org)
    body = await client.post(f"{API}/best-variant", json={"optimization_id": fresh})
    assert body.status_code == 200
    assert body.json()["optimization_id"] == fresh


async def test_serving_is_public_and_the_exposure_belongs_to_the_optimizations_org(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    opt = await create(client, conn, org)
    anonymous = await client.post(f"{API}/{opt}/serve", json={"anonymous_id": "p"})
    assert anonymous.status_code == 200
    assert anonymous.json()["meta"]["organization_id"] == str(org.id)
    own = await client.post(f"{API}/{opt}/serve", json={"anonymous_id": "k"}, headers=org.headers)
    assert own.status_code == 200
    # What `levered serve` sends after `levered login`: the user's access token.
    token = await access_token(conn, org)
    user = await client.post(f"{API}/{opt}/serve", json={}, headers=bearer(token))
    assert user.status_code == 200
    # Another organization's key does not see this optimization; a wrong key is a 401.
    foreign = await client.post(f"{API}/{opt}/serve", json={}, headers=other_org.headers)
    assert foreign.status_code == 404
    wrong = await client.post(f"{API}/{opt}/serve", json={}, headers={"X-API-Key": "lvk_nope"})
    assert wrong.status_code == 401
    rows = await wait_for_exposures(conn, opt, 3)
    assert {r["organization_id"] for r in rows} == {org.id}
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM warehouse.exposures WHERE organization_id = $1", other_org.id
        )
        == 0
    )


# -- settings: API key, rate limit ---------------------------------------------------------------


async def test_require_key_setting(
    settings: Settings, client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org)
    strict = Settings(**{**_fields(settings), "serve_require_key": True})
    async with AsyncTestClient(create_app(strict)) as locked:
        response = await locked.post(f"{API}/{opt}/serve", json={})
        assert response.status_code == 401
        response = await locked.post(f"{API}/{opt}/serve", json={}, headers=org.headers)
        assert response.status_code == 200


async def test_rate_limit_per_client_address(
    settings: Settings, client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org)
    limited = Settings(**{**_fields(settings), "serve_rate_limit": 0.5, "serve_rate_burst": 3})
    async with AsyncTestClient(create_app(limited)) as app:
        codes = [
            (await app.post(f"{API}/{opt}/serve", json={"dry_run": True})).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 200]
        refused = await app.post(f"{API}/{opt}/serve", json={"dry_run": True})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 2
        refused = await app.post(f"{API}/best-variant", json={"optimization_id": opt})
        assert refused.status_code == 429
        # A caller with an API key is identified, not metered.
        keyed = await app.post(f"{API}/{opt}/serve", json={}, headers=org.headers)
        assert keyed.status_code == 200


def test_token_bucket_refills_at_the_rate() -> None:
    from levered.services.rate_limit import TokenBucketLimiter

    now = [0.0]
    limiter = TokenBucketLimiter(2.0, 2, max_clients=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0  # buckets are per client
    now[0] += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    for key in "cdefg":  # more clients than max_clients: memory stays bounded
        limiter.acquire(key)
    assert len(limiter._buckets) <= 3


# -- shutdown -----------------------------------------------------------------------------------


async def test_a_clean_shutdown_loses_no_exposure(
    settings: Settings, client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(client, conn, org)
    n = 1_234
    async with AsyncTestClient(create_app(settings)) as app:
        buffer = app.app.state.serving.buffer
        buffer.interval = 3600.0  # nothing is written by the timer during the test
        buffer.max_events = 10**9
        await asyncio.sleep(0.1)  # let the writer pick up the new interval
        for i in range(n):
            response = await app.post(f"{API}/{opt}/serve", json={"anonymous_id": f"s{i % 50}"})
            assert response.status_code == 200
        assert buffer.pending > 0
    assert len(await exposures(conn, opt)) == n  # counted right after the app closed


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__struct_fields__}


async def test_the_buffer_keeps_rows_while_the_database_refuses_them(
    db_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    class DownPool:
        def acquire(self) -> Any:
            raise OSError("connection refused")

    opt = uuid4()

    def row(i: int) -> Any:
        return (org.id, opt, f"u{i}", {"a": "b"}, 1, {}, datetime.now(UTC), 0.5, uuid4(), 1, False)

    buffer = ExposureBuffer(DownPool(), max_pending=3)  # type: ignore[arg-type]
    for i in range(2):
        buffer.add(row(i))
    assert not await buffer.flush()
    assert buffer.pending == 2 and buffer.stats.failed_flushes == 1
    for i in range(2, 4):
        buffer.add(row(i))
    assert not await buffer.flush()
    assert buffer.pending == 3 and buffer.stats.dropped == 1  # the oldest row made room
    pool = await create_pool(db_url, min_size=1, max_size=1)
    try:
        buffer._pool = pool
        assert await buffer.flush()
    finally:
        await pool.close()
    stored = await conn.fetch(
        "SELECT anonymous_id FROM warehouse.exposures WHERE optimization_id = $1 "
        "ORDER BY anonymous_id",
        opt,
    )
    assert [r["anonymous_id"] for r in stored] == ["u1", "u2", "u3"]
    assert buffer.pending == 0 and buffer.stats.written == 3
