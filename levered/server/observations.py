"""``GET /api/v2/optimizations/{id}/observations``: matured exposures with their reward."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from levered.schemas.observations import ObservationPage
from levered.server.envelope import meta
from levered.services import observations as service
from levered.services.auth import Principal
from levered.services.warehouse import Warehouse

MAX_PAGE = 10**9
"""Bounded so that the row offset ``(page - 1) * size`` always fits PostgreSQL's bigint (an
unbounded page overflowed it: a 500)."""
Page = Annotated[int, Parameter(ge=1, le=MAX_PAGE, description=f"Page number, 1–{MAX_PAGE:,}.")]
Size = Annotated[int, Parameter(ge=1, le=500, description="Observations per page, 1–500.")]


class ObservationController(Controller):
    path = "/api/v2/optimizations/{optimization_id:uuid}/observations"
    tags = ("optimizations",)

    @get(
        summary="Page through observations: matured exposures (conversion window closed), "
        "newest first, each with the reward last-touch attribution credited to it. Younger "
        "exposures are counted in `pending`. 409 `no_reward_metric` without a reward metric.",
    )
    async def list_observations(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
        page: Page = 1,
        size: Size = 20,
    ) -> ObservationPage:
        return await service.list_observations(
            Warehouse.from_state(request.app.state),
            principal.organization_id,
            optimization_id,
            page=page,
            size=size,
            meta=meta(request, principal.organization_id),
        )
