"""The optimization lifecycle (docs/optimizations.md), as data the server, CLI and serving share.

``draft → live ⇄ paused``; ``live → shipped → live`` (undo); ``live/paused/shipped →
completed``; any status but ``archived`` → ``archived``. ``completed`` and ``archived`` are
final: nothing leads back to a running status from them (a completed optimization can still be
archived). Moving to the status an optimization already has is not a transition: the update
service treats it as a no-op (see docs/optimizations.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from levered.errors import Conflict
from levered.schemas.optimizations import Status

STATUSES: Final[tuple[Status, ...]] = (
    "draft",
    "live",
    "paused",
    "shipped",
    "completed",
    "archived",
)

TRANSITIONS: Final[Mapping[Status, tuple[Status, ...]]] = {
    "draft": ("live", "archived"),
    "live": ("paused", "shipped", "completed", "archived"),
    "paused": ("live", "completed", "archived"),
    "shipped": ("live", "completed", "archived"),
    "completed": ("archived",),
    "archived": (),
}

FINAL: Final[frozenset[Status]] = frozenset({"completed", "archived"})
"""Statuses that never return to draft/live/paused/shipped."""

DESIGN_EDITABLE: Final[frozenset[Status]] = frozenset({"draft"})
"""Where factors, levels, context factors, exclusions and model type may change."""

READ_ONLY: Final[frozenset[Status]] = frozenset({"archived"})
"""Where nothing about an optimization may change any more."""

HIDDEN_FROM_LISTS: Final[frozenset[Status]] = frozenset({"archived"})

ServeMode = Literal["refuse", "explore", "baseline", "winner"]
SERVE_MODE: Final[Mapping[Status, ServeMode]] = {
    "draft": "refuse",  # 409 not_live; the client shows its fallback
    "live": "explore",  # Thompson sampling; holdout users get the baseline
    "paused": "baseline",  # the baseline for everyone
    "shipped": "winner",  # the current winner for the user's context, no exploration
    "completed": "winner",
    "archived": "refuse",
}
LEARNS: Final[frozenset[Status]] = frozenset({"live"})
"""Statuses whose exposures feed training."""

INVALID_TRANSITION: Final = "invalid_transition"


def allowed_targets(current: Status) -> tuple[Status, ...]:
    return TRANSITIONS[current]


def can_transition(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: Status, target: Status) -> None:
    """Raise a 409 ``invalid_transition`` naming the allowed targets unless legal."""
    if can_transition(current, target):
        return
    allowed = list(TRANSITIONS[current])
    listed = ", ".join(allowed) if allowed else "none, it is final"
    article = "an" if current[0] in "aeiou" else "a"
    raise Conflict(
        f"cannot move {article} {current} optimization to {target}; allowed: {listed}",
        code=INVALID_TRANSITION,
        details={"from": current, "to": target, "allowed": allowed},
    )
