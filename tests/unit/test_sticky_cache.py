"""The in-process sticky cache: bounded, and a user who keeps coming back stays in it."""

from __future__ import annotations

import gc
from uuid import UUID, uuid4

from asyncpg.pgproto.pgproto import UUID as PgUUID

from levered.db.serving import Assignment
from levered.services.serving_config import StickyCache


def assignment(variant: int) -> Assignment:
    return Assignment(variant, False, uuid4(), 0.5, 1)


def test_a_returning_user_survives_any_number_of_new_users() -> None:
    cache = StickyCache(generation=100)
    regular = assignment(7)
    cache.put("regular", regular)
    for i in range(10_000):
        cache.put(f"new-{i}", assignment(1))
        if i % 99 == 0:  # comes back at least once per generation
            assert cache.get("regular") == regular
        assert len(cache) <= 200


def test_users_unseen_for_a_whole_generation_are_evicted_and_recent_ones_kept() -> None:
    cache = StickyCache(generation=100)
    stored = {f"u{i}": assignment(i) for i in range(250)}
    for user, value in stored.items():
        cache.put(user, value)
    # u0..u99 filled the first generation, dropped when u200 started the third.
    assert len(cache) == 150
    held = cache.previous | cache.current  # read without get(), which would promote
    assert set(held) == {f"u{i}" for i in range(100, 250)}


def test_a_hit_in_the_previous_generation_moves_the_user_forward() -> None:
    cache = StickyCache(generation=2)
    cache.put("a", assignment(1))
    cache.put("b", assignment(2))
    cache.put("c", assignment(3))  # current full: {a, b} becomes previous
    assert cache.get("a") is not None  # promoted into the current generation {c, a}
    cache.put("d", assignment(4))  # current full again: {c, a} becomes previous, b is gone
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


def test_overwriting_a_key_in_a_full_generation_does_not_rotate() -> None:
    cache = StickyCache(generation=2)
    cache.put("a", assignment(1))
    cache.put("b", assignment(2))
    cache.put("b", assignment(3))
    assert cache.previous == {}
    hit = cache.get("b")
    assert hit is not None and hit.variant_number == 3


def test_entries_come_back_equal_and_leave_the_garbage_collectors_lists() -> None:
    """A full collection must not walk the cached users: after one collection no entry is
    tracked (a tracked entry type made every full collection stall the event loop)."""
    cache = StickyCache(generation=2_000)
    given = {
        f"u{i}": Assignment(
            1 + i % 7,
            i % 2 == 0,
            uuid4() if i % 3 else PgUUID(uuid4().bytes),
            i / 1e3,
            None if i == 5 else i,
        )
        for i in range(1_500)
    }
    for user, assignment in given.items():
        cache.put(user, assignment)
    gc.collect()
    assert not any(
        gc.is_tracked(entry) for entry in [*cache.current.values(), *cache.previous.values()]
    )
    back = {user: cache.get(user) for user in given}
    assert back == given
    assert all(isinstance(a.decision_id, UUID) for a in back.values() if a is not None)
