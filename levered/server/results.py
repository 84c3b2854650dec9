"""``GET /api/v2/optimizations/{id}/results`` (docs/training.md, "Results")."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from levered.schemas.results import Results
from levered.server.context_query import ContextQuery, parse_context
from levered.server.envelope import meta
from levered.services import results as service
from levered.services.auth import Principal
from levered.services.warehouse import Warehouse

VariantLimit = Annotated[
    int, QueryParameter(ge=1, le=10000, description="At most this many variants, by weight.")
]

Dimension = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=100,
        description="A context factor: adds `dimension`, the counts, rates and intervals "
        "per value of it (docs/analysis.md).",
    ),
]


class ResultsController(Controller):
    path = "/api/v2/optimizations/{optimization_id:uuid}/results"
    tags = ("optimizations",)

    @get(
        summary="Results: per-variant counts and posterior (expected reward, prob_best, "
        "weight), measured lift vs the holdout (delta-method CI and p-value with ≥ 100 users "
        "per arm), modeled lift, factor/interaction/context importance and the daily series "
        "(and, with `dimension`, a breakdown by a context factor). "
        "Variants are the top `limit` by weight; `variants_total` counts them all.",
    )
    async def results(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
        limit: VariantLimit = 100,
        context: ContextQuery = None,
        dimension: Dimension = None,
    ) -> Results:
        return await service.results(
            Warehouse.from_state(request.app.state),
            principal.organization_id,
            optimization_id,
            limit=limit,
            meta=meta(request, principal.organization_id),
            context=parse_context(context),
            dimension=dimension,
        )
