"""Every controller the app serves, in one list (the app factory stays small)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from levered.server.analysis import AnalysisController
from levered.server.api_keys import ApiKeyController
from levered.server.health import HealthController
from levered.server.ingest import IngestController
from levered.server.me import MeController
from levered.server.metrics import MetricController
from levered.server.models import ModelController
from levered.server.oauth import AuthorizeController, TokenController
from levered.server.observations import ObservationController
from levered.server.optimizations import OptimizationController
from levered.server.organizations import (
    InviteController,
    MemberController,
    OrganizationController,
)
from levered.server.results import ResultsController
from levered.server.serving import ServingController
from levered.server.warehouse import WarehouseController

ROUTE_HANDLERS: list[ControllerRouterHandler] = [
    HealthController,
    IngestController,
    ApiKeyController,
    MeController,
    OrganizationController,
    MemberController,
    InviteController,
    AuthorizeController,
    TokenController,
    OptimizationController,
    WarehouseController,
    MetricController,
    ObservationController,
    ServingController,
    ModelController,
    ResultsController,
    AnalysisController,
]
