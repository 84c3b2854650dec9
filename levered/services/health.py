"""Readiness: the database answers and its schema is current."""

from __future__ import annotations

import asyncpg

from levered.db import migrations
from levered.errors import Unavailable


async def check_ready(pool: asyncpg.Pool) -> None:
    """Return when ready; raise :class:`Unavailable` saying why not."""
    try:
        async with pool.acquire(timeout=2) as conn:
            current = await migrations.is_current(conn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise Unavailable(f"database unreachable: {exc.__class__.__name__}") from exc
    if not current:
        raise Unavailable(
            "database schema is not current; run `levered db migrate`",
            details={"migrations": "pending"},
        )
