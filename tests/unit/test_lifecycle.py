"""The lifecycle table (docs/optimizations.md, "Lifecycle"), checked over every (from, to) pair."""

from __future__ import annotations

import itertools

import pytest

from levered.errors import Conflict
from levered.schemas.optimizations import Status
from levered.services import lifecycle

# Written out from the spec, independently of the table under test.
LEGAL: set[tuple[str, str]] = {
    ("draft", "live"),
    ("live", "paused"),
    ("paused", "live"),
    ("live", "shipped"),
    ("shipped", "live"),
    ("live", "completed"),
    ("paused", "completed"),
    ("shipped", "completed"),
    ("draft", "archived"),
    ("live", "archived"),
    ("paused", "archived"),
    ("shipped", "archived"),
    ("completed", "archived"),
}
PAIRS = [(a, b) for a, b in itertools.product(lifecycle.STATUSES, repeat=2) if a != b]


def test_statuses_match_the_schema_literal() -> None:
    assert set(lifecycle.STATUSES) == set(Status.__args__)  # type: ignore[attr-defined]
    assert set(lifecycle.TRANSITIONS) == set(lifecycle.STATUSES)


@pytest.mark.parametrize(("current", "target"), PAIRS)
def test_every_pair(current: Status, target: Status) -> None:
    legal = (current, target) in LEGAL
    assert lifecycle.can_transition(current, target) is legal
    if legal:
        lifecycle.check_transition(current, target)
        return
    with pytest.raises(Conflict) as caught:
        lifecycle.check_transition(current, target)
    error = caught.value
    assert error.code == "invalid_transition" and error.status == 409
    allowed = sorted(b for a, b in LEGAL if a == current)
    assert error.details == {
        "from": current,
        "to": target,
        "allowed": list(lifecycle.TRANSITIONS[current]),
    }
    assert sorted(error.details["allowed"]) == allowed
    assert f"to {target}" in error.message
    for name in allowed:
        assert name in error.message.split("allowed:")[1]


def test_message_reads_well() -> None:
    with pytest.raises(Conflict) as caught:
        lifecycle.check_transition("completed", "live")
    assert caught.value.message == "cannot move a completed optimization to live; allowed: archived"
    with pytest.raises(Conflict) as caught:
        lifecycle.check_transition("archived", "live")
    assert caught.value.message == (
        "cannot move an archived optimization to live; allowed: none, it is final"
    )


def test_same_status_is_not_a_transition() -> None:
    for status in lifecycle.STATUSES:
        assert not lifecycle.can_transition(status, status)


def test_final_statuses_never_lead_back() -> None:
    for status in lifecycle.FINAL:
        assert set(lifecycle.TRANSITIONS[status]) <= {"archived"}
    assert lifecycle.TRANSITIONS["archived"] == ()


def test_serving_table_covers_every_status() -> None:
    assert set(lifecycle.SERVE_MODE) == set(lifecycle.STATUSES)
    assert lifecycle.SERVE_MODE["live"] == "explore"
    assert lifecycle.SERVE_MODE["paused"] == "baseline"
    assert set(lifecycle.LEARNS) == {"live"}
    assert set(lifecycle.DESIGN_EDITABLE) == {"draft"}
