"""Credentials on the serve path when the database does not answer.

A key (or token) is checked in the database on every request, so a revoked one is refused at
once. On the serve path only — it reveals a variant and records an exposure, nothing else — a
credential that passed that check less than :data:`GRACE_S` ago is still accepted while the
database is unavailable, so that an outage does not turn every keyed serve into a 503 (or a
5 s wait). After one failed check the database counts as down for :data:`DOWN_S`: recently
checked credentials are then accepted without asking it at all; unknown ones still get 503.
The cost of the rule: a key revoked during an outage can serve for up to :data:`GRACE_S` more.
Credentials are remembered by their SHA-256, never in clear.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

from levered.errors import Unavailable
from levered.services.auth import Principal

GRACE_S: Final = 60.0
DOWN_S: Final = 2.0
MAX_REMEMBERED: Final = 10_000


class ServeCredentials:
    def __init__(self) -> None:
        self._checked: dict[bytes, tuple[Principal, float]] = {}
        self._down_until = 0.0

    async def principal(
        self, credential: str, check: Callable[[], Awaitable[Principal]]
    ) -> Principal:
        """``check()``'s principal; a recent one of ``credential`` when the database is down."""
        digest = hashlib.sha256(credential.encode()).digest()
        now = time.monotonic()
        recent = self._checked.get(digest)
        fresh = recent is not None and now - recent[1] < GRACE_S
        if fresh and now < self._down_until:
            assert recent is not None
            return recent[0]
        try:
            principal = await check()
        except Unavailable:
            self._down_until = time.monotonic() + DOWN_S
            if fresh:
                assert recent is not None
                return recent[0]
            raise
        if len(self._checked) >= MAX_REMEMBERED and digest not in self._checked:
            self._checked.clear()  # bounded memory; the next checks refill it
        self._checked[digest] = (principal, time.monotonic())
        return principal
