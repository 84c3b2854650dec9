"""Every controller the app serves, in one list (the app factory stays small)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from levered.server.api_keys import ApiKeyController
from levered.server.health import HealthController

ROUTE_HANDLERS: list[ControllerRouterHandler] = [
    HealthController,
    ApiKeyController,
]
