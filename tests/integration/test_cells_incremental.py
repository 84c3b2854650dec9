"""Stored cells, extended pass by pass, always equal a rebuild from scratch and the naive twin.

Random event streams arrive in rounds on a simulated clock (``received_at`` set explicitly):
each round brings new exposures and rewards, late ones (timed before the previous pass's as-of
time), exact duplicates and out-of-order inserts, for two organizations with the same
anonymous ids. After every round one pass runs at the round's time — sometimes it "crashes"
after writing everything but before its commit — and the stored cells, arm totals and pending
counts must equal the brute-force twin (``tests.naive.naive_attribution``) over what has
arrived; finally a forced rebuild must leave every stored bucket row exactly as it was.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levered.db import cell_store
from levered.db.attribution import find_target
from levered.services import cells
from levered.services.observations import attribute
from levered.services.warehouse import Warehouse
from tests.conftest import Org
from tests.integration.test_attribution import (
    T0,
    assert_matches_twin,
    insert_metric,
    insert_optimization,
    wh,
)
from tests.naive import Exposure, Reward, naive_attribution

__all__ = ["wh"]  # the fixture, imported for pytest

pytestmark = pytest.mark.anyio

USERS = [f"user-{i}" for i in range(12)]


class Crash(Exception):
    """Raised by a pass after its writes, before its commit."""


def _round_events(
    rng: random.Random,
    before: datetime,
    now: datetime,
    window: timedelta,
    history: list[Exposure],
) -> tuple[list[tuple[Exposure, datetime]], list[tuple[Reward, datetime]]]:
    """One round's arrivals (event, received_at): mostly timed in (before, now], some late —
    among them rewards for, and exposures that take the credit of, earlier rounds' exposures
    (the late data that must reach buckets counted long ago)."""
    exposures: list[tuple[Exposure, datetime]] = []
    rewards: list[tuple[Reward, datetime]] = []
    span = (now - before).total_seconds()

    def when(late: bool) -> datetime:
        if late:  # up to three windows before the previous pass
            return before - timedelta(seconds=rng.uniform(0, 3 * window.total_seconds() + 3600))
        return before + timedelta(seconds=rng.uniform(1, span))

    def received(at: datetime) -> datetime:
        floor = max(at, before + timedelta(minutes=10))
        return min(now, floor + timedelta(seconds=rng.uniform(0, 600)))

    for _ in range(rng.randint(3, 12)):
        org = rng.choice((0, 0, 1))
        user = rng.choice(USERS)
        at = when(rng.random() < 0.25)
        holdout = rng.random() < 0.2
        e = Exposure(
            org,
            rng.choice((0, 0, 1)),
            user,
            at.replace(microsecond=0),
            1 if holdout else rng.randint(1, 3),
            rng.choice(({}, {"country": "DE"}, {"country": "FR", "device": "ios"})),
            holdout,
        )
        exposures.append((e, received(e.at)))
        if rng.random() < 0.15:  # an exact duplicate (stored twice: no idempotency key)
            exposures.append((e, received(e.at)))
        for _ in range(rng.choice((0, 1, 1, 2))):
            offset = rng.uniform(-0.2, 1.5) * window.total_seconds()
            r_at = min(e.at + timedelta(seconds=offset), now).replace(microsecond=0)
            r = Reward(
                org,
                user,
                r_at,
                float(rng.choice((1, 2.5, 0.25))),
                rng.choice(("purchase", "purchase", "signup")),
                rng.choice((None, None, 0, 1)),
            )
            rewards.append((r, received(r.at) if r.at > before else received(before)))
    for e in rng.sample(history, min(len(history), rng.randint(0, 3))):
        at = e.at + timedelta(seconds=rng.uniform(0, window.total_seconds()))
        if at > before:
            continue
        at = at.replace(microsecond=0)
        if rng.random() < 0.5:  # a late reward inside e's window
            r = Reward(e.org, e.anonymous_id, at, 1.0, "purchase", None)
            rewards.append((r, received(before)))
        else:  # a late exposure after e: later rewards in both windows go to it
            thief = Exposure(
                e.org, e.optimization, e.anonymous_id, at, rng.randint(1, 3), {}, e.holdout
            )
            exposures.append((thief, received(before)))
    rng.shuffle(exposures)
    rng.shuffle(rewards)
    return exposures, rewards


async def _insert(
    conn: asyncpg.Connection,
    orgs: tuple[Org, Org],
    ids: dict[int, tuple[UUID, UUID]],
    exposures: list[tuple[Exposure, datetime]],
    rewards: list[tuple[Reward, datetime]],
) -> None:
    for e, received_at in exposures:
        await conn.execute(
            "INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, "
            'variant, variant_number, context, "timestamp", holdout, received_at) '
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            orgs[e.org].id,
            ids[e.org][e.optimization],
            e.anonymous_id,
            {"headline": "abc"[e.variant_number - 1]},
            e.variant_number,
            e.context,
            e.at,
            e.holdout,
            received_at,
        )
    for r, received_at in rewards:
        await conn.execute(
            "INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "
            '"timestamp", optimization_id, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
            orgs[r.org].id,
            r.anonymous_id,
            r.name,
            r.value,
            r.at,
            None if r.pinned is None else ids[r.org][r.pinned],
            received_at,
        )


async def _stored_rows(conn: asyncpg.Connection, optimization_id: UUID) -> tuple[Any, Any]:
    bucket_cells = await conn.fetch(
        "SELECT bucket, variant_number, holdout, context::text, exposures, reward_sum, "
        "reward_sumsq FROM observation_cells WHERE optimization_id = $1 ORDER BY 1, 2, 3, 4",
        optimization_id,
    )
    users = await conn.fetch(
        "SELECT bucket, holdout, anonymous_id, outcome FROM observation_users "
        "WHERE optimization_id = $1 ORDER BY 1, 2, 3",
        optimization_id,
    )
    dimension_cells = await conn.fetch(
        "SELECT bucket, dimension, value::text, variant_number, holdout, exposures, reward_sum, "
        "reward_sumsq FROM observation_dimension_cells WHERE optimization_id = $1 "
        "ORDER BY 1, 2, 3, 4, 5",
        optimization_id,
    )
    return (
        [tuple(r) for r in bucket_cells],
        [tuple(r) for r in users],
        [tuple(r) for r in dimension_cells],
    )


async def _assert_stored_match(
    conn: asyncpg.Connection, optimization_id: UUID, expected: dict[str, Any]
) -> None:
    state = await cell_store.load_state(conn, optimization_id)
    assert state is not None
    got: dict[tuple[int, str, bool], list[float]] = {}
    for row in await conn.fetch(
        "SELECT variant_number, context, holdout, sum(exposures) AS n, sum(reward_sum) AS s, "
        "sum(reward_sumsq) AS q FROM observation_cells WHERE optimization_id = $1 "
        "GROUP BY 1, 2, 3",
        optimization_id,
    ):
        key = (row["variant_number"], json.dumps(row["context"], sort_keys=True), row["holdout"])
        got[key] = [row["n"], row["s"], row["q"]]
    assert got.keys() == expected["cells"].keys()
    for key, (n, s, q) in expected["cells"].items():
        assert got[key][0] == n
        assert got[key][1] == pytest.approx(s)
        assert got[key][2] == pytest.approx(q)
    for arm, holdout in ((state.optimized, False), (state.holdout, True)):
        users, total, squares = expected["arms"][holdout]
        assert arm.users == users
        assert arm.outcome_sum == pytest.approx(total)
        assert arm.outcome_sumsq == pytest.approx(squares)
    assert sum(p["exposures"] for p in state.pending) == expected["pending"]
    await _assert_user_totals_follow_rows(conn, optimization_id)
    # The "device" dimension (no context factor) splits the same sums per bucket, variant and
    # holdout as the cells.
    by_cell = await conn.fetch(
        "SELECT bucket, variant_number, holdout, sum(exposures), sum(reward_sum) "
        "FROM observation_cells WHERE optimization_id = $1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        optimization_id,
    )
    by_dimension = await conn.fetch(
        "SELECT bucket, variant_number, holdout, sum(exposures), sum(reward_sum) "
        "FROM observation_dimension_cells WHERE optimization_id = $1 AND dimension = 'device' "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        optimization_id,
    )
    assert [tuple(r)[:4] for r in by_dimension] == [tuple(r)[:4] for r in by_cell]
    assert [r[4] for r in by_dimension] == pytest.approx([r[4] for r in by_cell])


async def _assert_user_totals_follow_rows(conn: asyncpg.Connection, optimization_id: UUID) -> None:
    """The per-user totals, kept by adding each pass's change, equal their bucket rows."""
    kept = await conn.fetch(
        "SELECT holdout, anonymous_id, buckets, credited, outcome_sum "
        "FROM observation_user_totals WHERE optimization_id = $1 ORDER BY 1, 2",
        optimization_id,
    )
    summed = await conn.fetch(
        "SELECT holdout, anonymous_id, count(*) AS buckets, "
        "count(*) FILTER (WHERE outcome > 0) AS credited, sum(outcome) AS outcome_sum "
        "FROM observation_users WHERE optimization_id = $1 GROUP BY 1, 2 ORDER BY 1, 2",
        optimization_id,
    )
    assert [tuple(r)[:4] for r in kept] == [tuple(r)[:4] for r in summed]
    for k, s in zip(kept, summed, strict=True):
        assert k["outcome_sum"] == pytest.approx(s["outcome_sum"])


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    reward_type=st.sampled_from(["bool", "numeric"]),
    window_hours=st.sampled_from([0.5, 2.0, 24.0]),
    rounds=st.integers(2, 6),
)
async def test_incremental_cells_equal_a_rebuild_and_the_twin(
    wh: Warehouse,
    conn: asyncpg.Connection,
    org: Org,
    other_org: Org,
    seed: int,
    reward_type: str,
    window_hours: float,
    rounds: int,
) -> None:
    rng = random.Random(seed)
    # Examples share the organizations: each starts from an empty warehouse (global rewards of
    # an earlier example would count here too, with the same anonymous ids).
    await conn.execute("DELETE FROM warehouse.exposures; DELETE FROM warehouse.rewards")
    window = timedelta(hours=window_hours)
    orgs = (org, other_org)
    ids: dict[int, tuple[UUID, UUID]] = {}
    for k, o in enumerate(orgs):
        metric = await insert_metric(conn, o, reward_type)
        ids[k] = (
            await insert_optimization(conn, o, metric, window_hours),
            await insert_optimization(conn, o, metric, window_hours),
        )
    mine = ids[0][0]
    await conn.execute("UPDATE optimizations SET dimensions = '[\"device\"]' WHERE id = $1", mine)
    found = await find_target(conn, org.id, mine)
    assert found is not None and found[1] is not None
    optimization, metric = found
    exposures: list[Exposure] = []
    rewards: list[Reward] = []
    now = T0
    for number in range(rounds):
        before, now = now, now + timedelta(hours=rng.choice((0.4, 3, 7, 26)))
        new_exposures, new_rewards = _round_events(rng, before, now, window, exposures)
        await _insert(conn, orgs, ids, new_exposures, new_rewards)
        exposures += [e for e, _ in new_exposures]
        rewards += [r for r, _ in new_rewards]
        if number and rng.random() < 0.3:
            previous = await _stored_rows(conn, mine)
            await _crashing_pass(wh, org.id, optimization, metric, now)
            assert await _stored_rows(conn, mine) == previous  # rolled back whole
        await cells.extend(wh, org.id, optimization, metric, as_of=now)
        expected = naive_attribution(
            exposures,
            rewards,
            window=window,
            as_of=now,
            start=T0 - timedelta(days=30),
            reward_type=reward_type,
            context_names=("country",),
        )
        await _assert_stored_match(conn, mine, expected)
    assert_matches_twin(await attribute(wh, org.id, mine, as_of=now), expected)
    incremental = await _stored_rows(conn, mine)
    done = await cells.extend(wh, org.id, optimization, metric, as_of=now, rebuild=True)
    assert done is not None and done.rebuilt
    rebuilt = await _stored_rows(conn, mine)
    assert [r[:5] for r in rebuilt[0]] == [r[:5] for r in incremental[0]]
    assert [r[5:] for r in rebuilt[0]] == pytest.approx([r[5:] for r in incremental[0]])
    assert [r[:3] for r in rebuilt[1]] == [r[:3] for r in incremental[1]]
    assert [r[3] for r in rebuilt[1]] == pytest.approx([r[3] for r in incremental[1]])
    assert [r[:6] for r in rebuilt[2]] == [r[:6] for r in incremental[2]]
    assert [r[6:] for r in rebuilt[2]] == pytest.approx([r[6:] for r in incremental[2]])
    # A rebuild deletes the stored rows before it writes the new ones: dying before its commit
    # leaves every row as it was.
    await _crashing_pass(wh, org.id, optimization, metric, now, rebuild=True)
    assert await _stored_rows(conn, mine) == rebuilt
    await _assert_stored_match(conn, mine, expected)
    # No foreign keys on the per-user rows (migration 0019): deleting the optimization still
    # removes them, through its observation_state row.
    await conn.execute("DELETE FROM optimizations WHERE id = $1", mine)
    for table in cell_store.STORED_TABLES:
        left = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE optimization_id = $1", mine)
        assert left == 0, table


async def _crashing_pass(
    wh: Warehouse,
    organization_id: UUID,
    optimization: Any,
    metric: Any,
    as_of: datetime,
    *,
    rebuild: bool = False,
) -> None:
    """A pass that dies after all its writes, before its commit (then the lock is released)."""
    real = cell_store.finish_pass

    async def finish_then_crash(*args: Any, **kwargs: Any) -> None:
        await real(*args, **kwargs)
        raise Crash

    cell_store.finish_pass = finish_then_crash  # type: ignore[assignment]
    try:
        with pytest.raises(Crash):
            await cells.extend(
                wh, organization_id, optimization, metric, as_of=as_of, rebuild=rebuild
            )
    finally:
        cell_store.finish_pass = real  # type: ignore[assignment]
