"""Batched sticky claims (levered.services.assignment_claims) against the real database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from levered.db import serving as db
from levered.db.pool import create_pool
from levered.errors import Unavailable
from levered.services import assignment_claims as claims
from levered.services.assignment_claims import ClaimBatcher
from tests.conftest import Org

DESIGN = [{"name": "headline", "dtype": "str", "levels": ["a", "b", "c"]}]


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


async def live_optimization(conn: asyncpg.Connection, org: Org) -> UUID:
    opt: UUID = await conn.fetchval(
        "INSERT INTO optimizations (organization_id, name, status, model_type, design_factors,"
        " attribution, holdout_percentage) VALUES ($1, 'claims', 'live', 'mab', $2, $3, 0)"
        " RETURNING id",
        org.id,
        DESIGN,
        {"type": "last_touch", "conversion_window_hours": 24},
    )
    return opt


def row(opt: UUID, org: Org, user: str, variant: int) -> db.AssignmentRow:
    return (opt, user, org.id, variant, False, uuid4(), 1 / 3, 1)


class Counting:
    """Counts batched statements (the real function runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[int] = []
        real = db.claim_assignments

        async def counted(conn: Any, rows: Any, live_since: Any) -> Any:
            self.calls.append(len(rows))
            return await real(conn, rows, live_since)

        monkeypatch.setattr(db, "claim_assignments", counted)


async def test_concurrent_claims_share_statements_and_each_gets_its_own_row(
    conn: asyncpg.Connection, org: Org, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    opt = await live_optimization(conn, org)
    counting = Counting(monkeypatch)
    batcher = ClaimBatcher(lambda: pool)
    rows = [row(opt, org, f"u{i}", 1 + i % 3) for i in range(300)]
    got = await asyncio.gather(*(batcher.claim(r, None) for r in rows))
    assert [(a.variant_number, a.decision_id) for a in got] == [(r[3], r[5]) for r in rows]
    assert sum(counting.calls) == 300
    assert len(counting.calls) < 300 / 10  # batched, not one statement per claim
    stored = await conn.fetch(
        "SELECT anonymous_id, variant_number, decision_id FROM assignments "
        "WHERE optimization_id = $1",
        opt,
    )
    assert {(r["anonymous_id"], r["variant_number"], r["decision_id"]) for r in stored} == {
        (r[1], r[3], r[5]) for r in rows
    }


async def test_every_field_round_trips_exactly_through_the_batched_statement(
    conn: asyncpg.Connection, org: Org, pool: asyncpg.Pool
) -> None:
    """The batch travels as one JSON document: floats, ids and odd text must come back as sent."""
    opt = await live_optimization(conn, org)
    batcher = ClaimBatcher(lambda: pool)
    awkward_ids = ['quote"d', "back\\slash", "ünïcødé 🎯", "tab\tnew\nline", "null", "[1,2]"]
    propensities = [1 / 3, 0.1 + 0.2, 5e-324, 1.0, 0.999999999999, 2.2250738585072014e-308]
    rows: list[db.AssignmentRow] = [
        (opt, user, org.id, 1 + i, i % 2 == 0, uuid4(), p, None if i == 0 else i)
        for i, (user, p) in enumerate(zip(awkward_ids, propensities, strict=True))
    ]
    since = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)  # assigned now: valid
    got = await asyncio.gather(*(batcher.claim(r, since) for r in rows))
    assert [tuple(a) for a in got] == [(r[3], r[4], r[5], r[6], r[7]) for r in rows]
    stored = await conn.fetch(
        "SELECT anonymous_id, variant_number, holdout, decision_id, propensity, model_version "
        "FROM assignments WHERE optimization_id = $1",
        opt,
    )
    assert {tuple(r) for r in stored} == {(r[1], r[3], r[4], r[5], r[6], r[7]) for r in rows}


async def test_a_repeated_key_is_claimed_once_and_every_caller_gets_the_first_decision(
    conn: asyncpg.Connection, org: Org, pool: asyncpg.Pool
) -> None:
    opt = await live_optimization(conn, org)
    batcher = ClaimBatcher(lambda: pool)
    rows = [row(opt, org, "same-user", 1 + i % 3) for i in range(20)]
    got = await asyncio.gather(*(batcher.claim(r, None) for r in rows))
    assert len({a.decision_id for a in got}) == 1
    (stored,) = await conn.fetch(
        "SELECT decision_id FROM assignments WHERE optimization_id = $1", opt
    )
    assert got[0].decision_id == stored["decision_id"] in {r[5] for r in rows}


async def test_valid_assignments_are_kept_and_stale_ones_replaced(
    conn: asyncpg.Connection, org: Org, pool: asyncpg.Pool
) -> None:
    opt = await live_optimization(conn, org)
    old = datetime.now(UTC) - timedelta(days=2)
    for user, variant in (("kept", 2), ("stale", 3)):
        await conn.execute(
            "INSERT INTO assignments (optimization_id, anonymous_id, organization_id, "
            "variant_number, holdout, decision_id, propensity, model_version, assigned_at) "
            "VALUES ($1, $2, $3, $4, false, $5, 0.5, 1, $6)",
            opt,
            user,
            org.id,
            variant,
            uuid4(),
            old if user == "stale" else datetime.now(UTC),
        )
    batcher = ClaimBatcher(lambda: pool)
    since = datetime.now(UTC) - timedelta(days=1)
    kept, stale, new = await asyncio.gather(
        batcher.claim(row(opt, org, "kept", 1), since),
        batcher.claim(row(opt, org, "stale", 1), since),
        batcher.claim(row(opt, org, "new", 1), since),
    )
    assert (kept.variant_number, stale.variant_number, new.variant_number) == (2, 1, 1)
    stored = await conn.fetch(
        "SELECT anonymous_id, variant_number FROM assignments WHERE optimization_id = $1", opt
    )
    by_user = {r["anonymous_id"]: r["variant_number"] for r in stored}
    assert by_user == {"kept": 2, "stale": 1, "new": 1}


async def test_a_key_committed_elsewhere_after_the_snapshot_is_claimed_alone(
    conn: asyncpg.Connection, org: Org, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race (another process commits the key between our snapshot and our insert) leaves
    the key out of both branches of the batch statement; it must then be claimed on its own
    and come back with the other process's decision."""
    opt = await live_optimization(conn, org)
    theirs = uuid4()
    real = db.claim_assignments

    async def racing(c: Any, rows: Any, live_since: Any) -> Any:
        if len(rows) == 1:  # the one-by-one claim after the race: no race this time
            return await real(c, rows, live_since)
        found = await real(c, [r for r in rows if r[1] != "raced"], live_since[:-1])
        await conn.execute(
            "INSERT INTO assignments (optimization_id, anonymous_id, organization_id, "
            "variant_number, holdout, decision_id, propensity, model_version) "
            "VALUES ($1, 'raced', $2, 3, false, $3, 0.2, 1)",
            opt,
            org.id,
            theirs,
        )
        return found

    monkeypatch.setattr(db, "claim_assignments", racing)
    batcher = ClaimBatcher(lambda: pool)
    mine, raced = await asyncio.gather(
        batcher.claim(row(opt, org, "calm", 2), None),
        batcher.claim(row(opt, org, "raced", 1), None),
    )
    assert mine.variant_number == 2
    assert (raced.variant_number, raced.decision_id) == (3, theirs)


async def test_a_row_the_database_refuses_fails_only_its_own_claim(
    conn: asyncpg.Connection, org: Org, pool: asyncpg.Pool
) -> None:
    opt = await live_optimization(conn, org)
    batcher = ClaimBatcher(lambda: pool)
    # variant_number is NOT NULL: a row the database refuses (typed Any: deliberately invalid)
    refused: Any = (opt, "b", org.id, None, False, uuid4(), 1.0, 1)
    results = await asyncio.gather(
        batcher.claim(row(opt, org, "a", 1), None),
        batcher.claim(refused, None),
        batcher.claim(row(opt, org, "c", 2), None),
        return_exceptions=True,
    )
    assert isinstance(results[1], asyncpg.NotNullViolationError)
    first, third = results[0], results[2]
    assert isinstance(first, db.Assignment) and isinstance(third, db.Assignment)
    assert (first.variant_number, third.variant_number) == (1, 2)
    assert await conn.fetchval("SELECT count(*) FROM assignments") == 2


async def test_an_unreachable_database_fails_the_batch_and_stores_nothing(
    conn: asyncpg.Connection, org: Org, db_url: str
) -> None:
    opt = await live_optimization(conn, org)
    closed = await create_pool(db_url, min_size=0, max_size=1)
    await closed.close()
    batcher = ClaimBatcher(lambda: closed)
    results = await asyncio.gather(
        *(batcher.claim(row(opt, org, f"u{i}", 1), None) for i in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, asyncpg.InterfaceError) for r in results)
    assert await conn.fetchval("SELECT count(*) FROM assignments") == 0


async def test_a_cancelled_serve_still_completes_its_claim_for_the_batch(
    conn: asyncpg.Connection, org: Org, pool: asyncpg.Pool
) -> None:
    """The client went away: its serve is cancelled, but the claim it queued is stored with the
    others of its batch (and a later serve of that user gets it)."""
    opt = await live_optimization(conn, org)
    batcher = ClaimBatcher(lambda: pool)
    rows = [row(opt, org, f"u{i}", 1 + i % 3) for i in range(5)]
    tasks = [asyncio.create_task(batcher.claim(r, None)) for r in rows]
    await asyncio.sleep(0)  # every claim is queued, the batch's statement is on its way
    tasks[2].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [a.decision_id for i, a in enumerate(done) if i != 2] == [
        r[5] for i, r in enumerate(rows) if i != 2
    ]
    stored = await conn.fetchval(
        "SELECT decision_id FROM assignments WHERE optimization_id = $1 AND anonymous_id = 'u2'",
        opt,
    )
    assert stored == rows[2][5]


async def test_a_claim_the_database_does_not_settle_in_time_answers_503_and_stores_nothing(
    conn: asyncpg.Connection, org: Org, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batcher keeps each claim's deadline: an uncommitted insert of the same key holds the
    batch's statement, which is cancelled at the deadline; every claim of it gets the 503."""
    monkeypatch.setattr(claims, "DB_WAIT_S", 0.5)
    opt = await live_optimization(conn, org)
    batcher = ClaimBatcher(lambda: pool)
    blocker = await pool.acquire()
    try:
        holding = blocker.transaction()
        await holding.start()
        await db.claim_assignments(blocker, [row(opt, org, "held", 1)], [None])
        began = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            batcher.claim(row(opt, org, "held", 2), None),
            batcher.claim(row(opt, org, "free", 2), None),
            return_exceptions=True,
        )
        waited = asyncio.get_running_loop().time() - began
        await holding.rollback()
    finally:
        await pool.release(blocker)
    causes = [r.details for r in results if isinstance(r, Unavailable)]
    assert causes == [{"cause": "database_timeout"}] * 2, results
    assert waited < 5  # the deadline, not the 60 s command timeout
    assert await conn.fetchval("SELECT count(*) FROM assignments") == 0
