"""Last-touch attribution in the real warehouse, as the organization, against a naive twin.

Events are inserted directly into the warehouse tables with explicit timestamps; attribution
runs through the same path as training (tenant login, read-only transaction, migration 0005's
pinning filter).
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from levered.bandit.cells import NO_CONTEXT
from levered.db import cell_passes, sandbox
from levered.db.attribution import OptimizationSpec, attribution_transaction, find_target
from levered.db.pool import create_pool
from levered.errors import Conflict, NotFound
from levered.services import cells
from levered.services.observations import Attribution, attribute
from levered.services.warehouse import Warehouse
from tests.conftest import Org
from tests.naive import Exposure, Reward, naive_attribution

# Marked at collection time (conftest's hook runs after parametrization) so that parametrized
# async tests keep their parameters.
pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PURCHASE_SQL = (
    "SELECT anonymous_id, timestamp, value FROM rewards "
    "WHERE name = 'purchase' AND timestamp >= @start_date"
)
DESIGN = [{"name": "headline", "levels": ["a", "b", "c"]}]


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


async def insert_metric(
    conn: asyncpg.Connection,
    org: Org,
    reward_type: str = "bool",
    sql: str = PURCHASE_SQL,
    value_col: str | None = "value",
) -> UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
        "value_col, reward_type) VALUES ($1, 'Purchases', $2, 'anonymous_id', 'timestamp', $3, "
        "$4) RETURNING id",
        org.id,
        sql,
        value_col,
        reward_type,
    )


async def insert_optimization(
    conn: asyncpg.Connection,
    org: Org,
    metric_id: UUID | None,
    window_hours: float = 24.0,
    context: tuple[str, ...] = ("country",),
) -> UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO optimizations (organization_id, name, status, model_type, design_factors, "
        "context_factors, reward_metric_id, attribution, holdout_percentage) "
        "VALUES ($1, 'Hero', 'live', 'cmab', $2, $3, $4, $5, 10) RETURNING id",
        org.id,
        DESIGN,
        [{"name": name} for name in context],
        metric_id,
        {"type": "last_touch", "conversion_window_hours": window_hours},
    )


async def expose(
    conn: asyncpg.Connection,
    org: Org,
    optimization_id: UUID,
    anonymous_id: str,
    at: datetime,
    variant_number: int = 1,
    context: dict[str, Any] | None = None,
    holdout: bool = False,
) -> None:
    await conn.execute(
        "INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, "
        'variant, variant_number, context, "timestamp", holdout) '
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        org.id,
        optimization_id,
        anonymous_id,
        {"headline": DESIGN[0]["levels"][variant_number - 1]},
        variant_number,
        context or {},
        at,
        holdout,
    )


async def reward(
    conn: asyncpg.Connection,
    org: Org,
    anonymous_id: str,
    at: datetime,
    value: float = 1.0,
    optimization_id: UUID | None = None,
    name: str = "purchase",
) -> None:
    await conn.execute(
        'INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "timestamp", '
        "optimization_id) VALUES ($1, $2, $3, $4, $5, $6)",
        org.id,
        anonymous_id,
        name,
        value,
        at,
        optimization_id,
    )


@pytest.fixture
async def wh(db_url: str) -> AsyncIterator[Warehouse]:
    pool = await create_pool(db_url, min_size=1, max_size=4)
    try:
        yield Warehouse(pool)
    finally:
        await pool.close()


Cell = tuple[int, str, bool]


def cells_of(result: Attribution) -> dict[Cell, tuple[int, float, float]]:
    """The cells as {(variant, context JSON, holdout): (count, Σreward, Σreward²)}."""
    c = result.cells
    out: dict[Cell, tuple[int, float, float]] = {}
    for i in range(c.size):
        k = int(c.context_index[i])
        context = {} if k == NO_CONTEXT else dict(c.contexts[k])
        key = (
            int(c.variant_number[i]),
            json.dumps(context, sort_keys=True),
            bool(result.holdout[i]),
        )
        assert key not in out
        out[key] = (int(c.count[i]), float(c.reward_sum[i]), float(c.reward_sumsq[i]))
    return out


@dataclass
class Setup:
    org: Org
    optimization_id: UUID


async def setup(
    conn: asyncpg.Connection, org: Org, reward_type: str = "bool", window_hours: float = 24.0
) -> Setup:
    metric_id = await insert_metric(conn, org, reward_type)
    return Setup(org, await insert_optimization(conn, org, metric_id, window_hours))


LATE = T0 + hours(24 * 30)  # long after every window in the deterministic tests


# -- the rules, one at a time -----------------------------------------------------------------


async def test_last_touch_credits_the_latest_exposure_before_the_reward(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    s = await setup(conn, org)
    await expose(conn, org, s.optimization_id, "u1", T0, variant_number=1)
    await expose(conn, org, s.optimization_id, "u1", T0 + hours(2), variant_number=2)
    await expose(conn, org, s.optimization_id, "u1", T0 + hours(5), variant_number=3)
    await reward(conn, org, "u1", T0 + hours(3))  # after v2, before v3
    result = await attribute(wh, org.id, s.optimization_id, as_of=LATE)
    assert cells_of(result) == {
        (1, "{}", False): (1, 0.0, 0.0),
        (2, "{}", False): (1, 1.0, 1.0),
        (3, "{}", False): (1, 0.0, 0.0),
    }


async def test_window_bounds_are_inclusive_and_outside_rewards_are_not_credited(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    s = await setup(conn, org, window_hours=24)
    await expose(conn, org, s.optimization_id, "at-start", T0)
    await reward(conn, org, "at-start", T0)  # same instant: credited
    await expose(conn, org, s.optimization_id, "at-end", T0)
    await reward(conn, org, "at-end", T0 + hours(24))  # exactly the window: credited
    await expose(conn, org, s.optimization_id, "too-late", T0)
    await reward(conn, org, "too-late", T0 + hours(24) + timedelta(seconds=1))
    await expose(conn, org, s.optimization_id, "too-early", T0)
    await reward(conn, org, "too-early", T0 - timedelta(seconds=1))  # before any exposure
    result = await attribute(wh, org.id, s.optimization_id, as_of=LATE)
    assert cells_of(result) == {(1, "{}", False): (4, 2.0, 2.0)}
    assert result.optimized_users.users == 4
    assert result.optimized_users.outcome_sum == 2.0


async def test_a_reward_past_the_latest_window_is_not_given_to_an_earlier_exposure(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    s = await setup(conn, org, window_hours=10)
    await expose(conn, org, s.optimization_id, "u", T0, variant_number=1)
    await expose(conn, org, s.optimization_id, "u", T0 + hours(1), variant_number=2)
    # 10.5 h after v1: inside v1's window too, but v2 is the last touch and it got it.
    await reward(conn, org, "u", T0 + hours(10.5))
    # 11.5 h after v2: outside v2's window; v1's too. Nobody gets it.
    await reward(conn, org, "u", T0 + hours(12.5), 5.0)
    result = await attribute(wh, org.id, s.optimization_id, as_of=LATE)
    assert cells_of(result) == {(1, "{}", False): (1, 0.0, 0.0), (2, "{}", False): (1, 1.0, 1.0)}


async def test_bool_counts_once_per_exposure_numeric_sums(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    flag = await setup(conn, org, "bool")
    numeric_metric = await insert_metric(conn, org, "numeric")
    amount = await insert_optimization(conn, org, numeric_metric)
    for optimization_id in (flag.optimization_id, amount):
        await expose(conn, org, optimization_id, "u", T0)
        await expose(conn, org, optimization_id, "v", T0)
    await reward(conn, org, "u", T0 + hours(1), 12.5)
    await reward(conn, org, "u", T0 + hours(2), 7.5)
    await reward(conn, org, "v", T0 + hours(3), 3.0)

    as_bool = await attribute(wh, org.id, flag.optimization_id, as_of=LATE)
    assert cells_of(as_bool) == {(1, "{}", False): (2, 2.0, 2.0)}
    as_sum = await attribute(wh, org.id, amount, as_of=LATE)
    assert cells_of(as_sum) == {(1, "{}", False): (2, 23.0, 20.0**2 + 3.0**2)}


async def test_pinned_rewards_count_only_for_their_optimization_global_ones_everywhere(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    s = await setup(conn, org, "numeric")
    other = await insert_optimization(conn, org, await insert_metric(conn, org, "numeric"))
    for optimization_id in (s.optimization_id, other):
        await expose(conn, org, optimization_id, "u", T0)
    await reward(conn, org, "u", T0 + hours(1), 1.0)  # global
    await reward(conn, org, "u", T0 + hours(1), 10.0, optimization_id=s.optimization_id)
    await reward(conn, org, "u", T0 + hours(1), 100.0, optimization_id=other)

    mine = await attribute(wh, org.id, s.optimization_id, as_of=LATE)
    assert cells_of(mine) == {(1, "{}", False): (1, 11.0, 121.0)}
    theirs = await attribute(wh, org.id, other, as_of=LATE)
    assert cells_of(theirs) == {(1, "{}", False): (1, 101.0, 101.0**2)}
    # Outside attribution (no setting) the tenant sees all three, as in migration 0002.
    async with (
        sandbox.tenant_session(conn, org.id) as session,
        attribution_transaction(session, s.optimization_id) as tenant,
    ):
        assert await tenant.fetchval("SELECT count(*) FROM rewards") == 2
        await tenant.execute("SELECT set_config('levered.attribution_optimization', '', true)")
        assert await tenant.fetchval("SELECT count(*) FROM rewards") == 3


async def test_pending_exposures_are_counted_not_observed(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    s = await setup(conn, org, window_hours=24)
    await expose(conn, org, s.optimization_id, "old", T0)
    await expose(conn, org, s.optimization_id, "young", T0 + hours(10))
    await expose(conn, org, s.optimization_id, "future", T0 + hours(40))  # after as_of: ignored
    await reward(conn, org, "old", T0 + hours(1))
    await reward(conn, org, "young", T0 + hours(11))
    result = await attribute(wh, org.id, s.optimization_id, as_of=T0 + hours(30))
    assert cells_of(result) == {(1, "{}", False): (1, 1.0, 1.0)}
    assert (result.matured, result.pending) == (1, 1)
    assert result.days.exposures == [2] and result.days.matured == [1]
    # Later the young one matures, and the one from the future is now pending.
    later = await attribute(wh, org.id, s.optimization_id, as_of=T0 + hours(44))
    assert cells_of(later) == {(1, "{}", False): (2, 2.0, 2.0)}
    assert (later.matured, later.pending) == (2, 1)


async def test_start_limits_exposures_but_not_last_touch(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    s = await setup(conn, org)
    await expose(conn, org, s.optimization_id, "u", T0, variant_number=1)
    await expose(conn, org, s.optimization_id, "u", T0 + hours(2), variant_number=2)
    await reward(conn, org, "u", T0 + hours(3))
    result = await attribute(wh, org.id, s.optimization_id, as_of=LATE, start=T0 + hours(1))
    assert cells_of(result) == {(2, "{}", False): (1, 1.0, 1.0)}
    await expose(conn, org, s.optimization_id, "w", T0, variant_number=3)
    await expose(conn, org, s.optimization_id, "w", T0 + hours(2), variant_number=3)
    result = await attribute(wh, org.id, s.optimization_id, as_of=LATE, start=T0 + hours(1))
    assert cells_of(result) == {(2, "{}", False): (1, 1.0, 1.0), (3, "{}", False): (1, 0.0, 0.0)}


async def test_holdout_is_kept_apart_and_users_are_pooled(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    s = await setup(conn, org)
    # Holdout user h1: two exposures, converts twice -> one converted user.
    await expose(conn, org, s.optimization_id, "h1", T0, holdout=True)
    await expose(conn, org, s.optimization_id, "h1", T0 + hours(1), holdout=True)
    await reward(conn, org, "h1", T0 + hours(0.5))
    await reward(conn, org, "h1", T0 + hours(1.5))
    await expose(conn, org, s.optimization_id, "h2", T0, holdout=True)
    await expose(conn, org, s.optimization_id, "o1", T0, variant_number=2)
    await expose(conn, org, s.optimization_id, "o1", T0 + hours(1), variant_number=3)
    await reward(conn, org, "o1", T0 + hours(2))
    result = await attribute(wh, org.id, s.optimization_id, as_of=LATE)
    assert cells_of(result) == {
        (1, "{}", True): (3, 2.0, 2.0),
        (2, "{}", False): (1, 0.0, 0.0),
        (3, "{}", False): (1, 1.0, 1.0),
    }
    assert (result.holdout_users.users, result.holdout_users.outcome_sum) == (2, 1.0)
    assert (result.optimized_users.users, result.optimized_users.outcome_sum) == (1, 1.0)


async def test_cells_keep_only_the_context_factors_of_the_optimization(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    s = await setup(conn, org)
    await expose(conn, org, s.optimization_id, "a", T0, context={"country": "DE", "ua": "x"})
    await expose(conn, org, s.optimization_id, "b", T0, context={"country": "DE", "ua": "y"})
    await expose(conn, org, s.optimization_id, "c", T0, context={"ua": "z"})
    await reward(conn, org, "a", T0 + hours(1))
    result = await attribute(wh, org.id, s.optimization_id, as_of=LATE)
    assert cells_of(result) == {
        (1, '{"country": "DE"}', False): (2, 1.0, 1.0),
        (1, "{}", False): (1, 0.0, 0.0),
    }


async def test_another_organizations_events_never_count(
    conn: asyncpg.Connection, wh: Warehouse, org: Org, other_org: Org
) -> None:
    s = await setup(conn, org)
    theirs = await setup(conn, other_org)
    await expose(conn, org, s.optimization_id, "shared", T0)
    # Same anonymous id, their exposures (even claiming our optimization) and rewards.
    await expose(conn, other_org, s.optimization_id, "shared", T0 + hours(1), variant_number=2)
    await expose(conn, other_org, theirs.optimization_id, "shared", T0)
    await reward(conn, other_org, "shared", T0 + hours(2))
    await reward(conn, other_org, "shared", T0 + hours(2), optimization_id=s.optimization_id)
    mine = await attribute(wh, org.id, s.optimization_id, as_of=LATE)
    assert cells_of(mine) == {(1, "{}", False): (1, 0.0, 0.0)}
    await reward(conn, org, "shared", T0 + hours(3))
    mine = await attribute(wh, org.id, s.optimization_id, as_of=LATE)
    assert cells_of(mine) == {(1, "{}", False): (1, 1.0, 1.0)}
    # Their attribution sees their own exposure and reward only.
    found = await attribute(wh, other_org.id, theirs.optimization_id, as_of=LATE)
    assert cells_of(found) == {(1, "{}", False): (1, 1.0, 1.0)}


async def test_daily_series_per_variant_and_holdout(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    s = await setup(conn, org)
    await expose(conn, org, s.optimization_id, "a", T0, variant_number=2)
    await expose(conn, org, s.optimization_id, "b", T0 + hours(1), variant_number=2)
    await expose(conn, org, s.optimization_id, "c", T0 + hours(25), variant_number=2)
    await expose(conn, org, s.optimization_id, "h", T0 + hours(25), holdout=True)
    await reward(conn, org, "b", T0 + hours(2))
    await reward(conn, org, "h", T0 + hours(26))
    result = await attribute(wh, org.id, s.optimization_id, as_of=LATE)
    d = result.days
    points = set(zip(d.day, d.variant_number, d.holdout, d.exposures, d.reward_sum, strict=True))
    assert points == {
        (date(2026, 3, 2), 2, False, 2, 1.0),
        (date(2026, 3, 3), 2, False, 1, 0.0),
        (date(2026, 3, 3), 1, True, 1, 1.0),
    }


async def test_metric_failures_are_conflicts_with_the_reason(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    metric_id = await insert_metric(conn, org, sql="SELECT anonymous_id, nope FROM rewards")
    optimization_id = await insert_optimization(conn, org, metric_id)
    with pytest.raises(Conflict, match="nope") as caught:
        await attribute(wh, org.id, optimization_id, as_of=LATE)
    assert caught.value.code == "metric_failed"
    # Metric SQL cannot reach the control plane: it runs as the tenant.
    await conn.execute(
        "UPDATE metrics SET sql = 'SELECT id::text AS anonymous_id, "
        "created_at AS timestamp, 1 AS value FROM public.api_keys' "
        "WHERE id = $1",
        metric_id,
    )
    with pytest.raises(Conflict, match="permission denied"):
        await attribute(wh, org.id, optimization_id, as_of=LATE)


async def test_statement_timeout_is_a_conflict(
    conn: asyncpg.Connection, wh: Warehouse, org: Org
) -> None:
    metric_id = await insert_metric(
        conn, org, sql="SELECT anonymous_id, timestamp, value, pg_sleep(5) FROM rewards"
    )
    s = Setup(org, await insert_optimization(conn, org, metric_id))
    await expose(conn, org, s.optimization_id, "u", T0)
    await reward(conn, org, "u", T0 + hours(1))
    with pytest.raises(Conflict) as caught:
        await attribute(wh, org.id, s.optimization_id, as_of=LATE, timeout_s=0.2)
    assert caught.value.code == "metric_timeout"


async def test_unknown_optimization_or_no_metric(
    conn: asyncpg.Connection, wh: Warehouse, org: Org, other_org: Org
) -> None:
    s = await setup(conn, org)
    with pytest.raises(NotFound):
        await attribute(wh, other_org.id, s.optimization_id)
    without = await insert_optimization(conn, org, None)
    with pytest.raises(Conflict) as caught:
        await attribute(wh, org.id, without)
    assert caught.value.code == "no_reward_metric"


# -- against a naive twin ---------------------------------------------------------------------


def random_events(rng: random.Random, window_hours: float) -> tuple[list[Exposure], list[Reward]]:
    """Two orgs with the same anonymous ids; rewards near exposures (inside, on the edge of and
    outside the window), plus strays; global, pinned-here and pinned-elsewhere rewards."""
    users = [f"user-{i}" for i in range(40)]
    exposures: list[Exposure] = []
    rewards: list[Reward] = []

    def a_reward(org: int, anonymous_id: str, at: datetime) -> None:
        rewards.append(
            Reward(
                org,
                anonymous_id,
                at,
                float(rng.choice((1, 2.5, 10, 0.25))),
                rng.choice(("purchase", "purchase", "purchase", "signup")),
                rng.choice((None, None, 0, 1)),
            )
        )

    window_minutes = round(window_hours * 60)
    for org in (0, 1):
        for anonymous_id in users:
            # Distinct minutes per user: last touch is never a tie.
            minutes = rng.sample(range(0, 10 * 24 * 60), rng.randint(0, 5))
            holdout = rng.random() < 0.2
            for minute in minutes:
                at = T0 + timedelta(minutes=minute)
                exposures.append(
                    Exposure(
                        org,
                        rng.choice((0, 0, 1)),
                        anonymous_id,
                        at,
                        1 if holdout else rng.randint(1, 3),
                        rng.choice(({}, {"country": "DE"}, {"country": "FR", "device": "ios"})),
                        holdout,
                    )
                )
                for _ in range(rng.choice((0, 1, 1, 2, 3))):
                    offset = rng.choice(
                        (
                            0,
                            window_minutes,
                            window_minutes + 1,
                            rng.randrange(-60, window_minutes * 2),
                        )
                    )
                    a_reward(org, anonymous_id, at + timedelta(minutes=offset))
            for _ in range(rng.randint(0, 2)):
                a_reward(
                    org, anonymous_id, T0 + timedelta(minutes=rng.randrange(-600, 11 * 24 * 60))
                )
    return exposures, rewards


async def load_random_events(
    conn: asyncpg.Connection,
    orgs: tuple[Org, Org],
    seed: int,
    reward_type: str,
    window_hours: float,
) -> tuple[UUID, datetime, datetime, dict[str, Any]]:
    """Random events of both organizations in the warehouse; returns the optimization under
    test, the as-of time, the window start and what the naive twin expects of them."""
    rng = random.Random(seed)
    exposures, rewards = random_events(rng, window_hours)
    as_of = T0 + timedelta(days=rng.choice((4, 8, 12)))
    start = T0 + timedelta(days=rng.choice((0, 1)))
    ids = {}
    for k, o in enumerate(orgs):
        metric = await insert_metric(conn, o, reward_type)
        ids[k] = (
            await insert_optimization(conn, o, metric, window_hours),
            await insert_optimization(conn, o, metric, window_hours),
        )
    for e in exposures:
        await expose(
            conn,
            orgs[e.org],
            ids[e.org][e.optimization],
            e.anonymous_id,
            e.at,
            e.variant_number,
            e.context,
            e.holdout,
        )
    for r in rewards:
        pinned = None if r.pinned is None else ids[r.org][r.pinned]
        await reward(conn, orgs[r.org], r.anonymous_id, r.at, r.value, pinned, r.name)

    expected = naive_attribution(
        exposures,
        rewards,
        window=hours(window_hours),
        as_of=as_of,
        start=start,
        reward_type=reward_type,
        context_names=("country",),
    )
    assert sum(s for _, s, _ in expected["cells"].values()) > 0  # the data exercises credit
    return ids[0][0], as_of, start, expected


def assert_matches_twin(result: Attribution, expected: dict[str, Any]) -> None:
    got = cells_of(result)
    assert got.keys() == expected["cells"].keys()
    for key, (n, s, q) in expected["cells"].items():
        assert got[key][0] == n
        assert got[key][1] == pytest.approx(s)
        assert got[key][2] == pytest.approx(q)
    assert result.pending == expected["pending"]
    assert result.matured == sum(n for n, _, _ in expected["cells"].values())
    for arm, holdout in ((result.optimized_users, False), (result.holdout_users, True)):
        users, total, squares = expected["arms"][holdout]
        assert arm.users == users
        assert arm.outcome_sum == pytest.approx(total)
        assert arm.outcome_sumsq == pytest.approx(squares)
    assert sum(result.days.reward_sum) == pytest.approx(sum(result.cells.reward_sum))


@pytest.mark.parametrize(
    ("seed", "reward_type", "window_hours"),
    [(1, "bool", 1.5), (2, "numeric", 24), (3, "bool", 36), (4, "numeric", 0.25)],
)
async def test_cells_match_the_naive_twin_on_random_events(
    conn: asyncpg.Connection,
    wh: Warehouse,
    org: Org,
    other_org: Org,
    seed: int,
    reward_type: str,
    window_hours: float,
) -> None:
    optimization_id, as_of, start, expected = await load_random_events(
        conn, (org, other_org), seed, reward_type, window_hours
    )
    result = await attribute(wh, org.id, optimization_id, as_of=as_of, start=start)
    assert_matches_twin(result, expected)


@pytest.mark.parametrize(
    ("seed", "reward_type", "window_hours"), [(5, "bool", 24), (6, "numeric", 1.5)]
)
async def test_chunks_of_buckets_add_up_to_the_naive_twin(
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    reward_type: str,
    window_hours: float,
) -> None:
    """Chunks of at most 3 exposures cut the ~50 exposures into many statements (some buckets
    alone, users split across chunks): the large-optimization path, at test scale."""
    optimization_id, as_of, start, expected = await load_random_events(
        conn, (org, other_org), seed, reward_type, window_hours
    )
    statements = 0
    real_chunk = cell_passes.chunk

    async def counted(*args: Any, **kwargs: Any) -> cell_passes.ChunkRows:
        nonlocal statements
        statements += 1
        return await real_chunk(*args, **kwargs)

    monkeypatch.setattr(cells, "CHUNK_EXPOSURES", 3)
    monkeypatch.setattr(cell_passes, "chunk", counted)
    result = await attribute(wh, org.id, optimization_id, as_of=as_of, start=start)
    assert statements >= 5
    assert_matches_twin(result, expected)


async def test_find_target_is_org_scoped(
    conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    s = await setup(conn, org, window_hours=1.5)
    assert await find_target(conn, other_org.id, s.optimization_id) is None
    found = await find_target(conn, org.id, s.optimization_id)
    assert found is not None
    optimization, metric = found
    design = tuple(DESIGN)
    assert optimization == OptimizationSpec(
        s.optimization_id, 1.5, ("country",), design_factors=design
    )
    assert metric is not None and metric.reward_type == "bool"
    no_metric = await insert_optimization(conn, org, None)
    assert await find_target(conn, org.id, no_metric) == (
        OptimizationSpec(no_metric, 24.0, ("country",), design_factors=design),
        None,
    )
