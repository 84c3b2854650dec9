"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Controller, Request, get

from levered import __version__
from levered.db import migrations
from levered.errors import Unavailable
from levered.schemas.common import Health, Readiness


class HealthController(Controller):
    include_in_schema = True
    tags = ("health",)

    @get("/health", summary="Liveness: the process answers.")
    async def health(self) -> Health:
        return Health("ok", __version__)

    @get("/ready", summary="Readiness: database reachable and migrations current.")
    async def ready(self, request: Request[Any, Any, Any]) -> Readiness:
        pool: asyncpg.Pool = request.app.state.pool
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
        return Readiness("ready", "ok", "current")
