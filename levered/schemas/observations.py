"""Wire Structs of ``GET /api/v2/optimizations/{id}/observations`` (docs/attribution.md).

An observation is a *matured* exposure (its conversion window has closed) joined to the reward
last-touch attribution credited to it. Younger exposures are only counted, as ``pending``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from levered.schemas.common import ResponseMeta


class Observation(msgspec.Struct, frozen=True):
    anonymous_id: str
    variant_number: int
    variant: dict[str, Any]
    """The variant as stored with the exposure (factor → level)."""
    context: dict[str, Any]
    """The exposure's context as sent (every key, not only the optimization's factors)."""
    timestamp: datetime
    holdout: bool
    reward: float
    """1/0 for a bool metric; the sum of the credited values for a numeric one."""
    converted: bool
    """Whether at least one reward row was credited to this exposure."""


class ObservationPage(msgspec.Struct, frozen=True):
    """Matured exposures, newest first, ``size`` per page (pages start at 1)."""

    observations: list[Observation]
    page: int
    size: int
    total: int
    """Matured exposures in all pages."""
    pending: int
    """Exposures whose conversion window is still open (not observations yet)."""
    as_of: datetime
    """The time maturity was judged at (the request's time)."""
    meta: ResponseMeta
