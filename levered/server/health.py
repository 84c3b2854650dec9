"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from levered import __version__
from levered.schemas.common import Health, Readiness
from levered.services.health import check_ready


class HealthController(Controller):
    include_in_schema = True
    tags = ("health",)

    @get("/health", summary="Liveness: the process answers.")
    async def health(self) -> Health:
        return Health("ok", __version__)

    @get("/ready", summary="Readiness: database reachable and migrations current.")
    async def ready(self, request: Request[Any, Any, Any]) -> Readiness:
        await check_ready(request.app.state.pool)
        return Readiness("ready", "ok", "current")
