"""Translate asyncpg failures into domain errors (the database edge of the error tree)."""

from __future__ import annotations

import asyncpg

from levered.errors import LeveredError, Unavailable

TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "53300",  # too_many_connections
    "57P01",  # admin_shutdown
    "57P03",  # cannot_connect_now
    "55P03",  # lock_not_available
}


def translate(exc: BaseException) -> LeveredError | None:
    """The domain error for a database failure, or None when it is not one of ours."""
    if isinstance(exc, asyncpg.PostgresError):
        if getattr(exc, "sqlstate", None) in TRANSIENT_SQLSTATES or isinstance(
            exc, asyncpg.PostgresConnectionError
        ):
            return Unavailable("the database is temporarily unavailable; retry shortly")
        return None
    if isinstance(exc, (asyncpg.InterfaceError, ConnectionError, OSError, TimeoutError)):
        return Unavailable("the database is unreachable; retry shortly")
    return None
