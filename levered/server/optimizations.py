"""``/api/v2/optimizations``: create, list, show, edit (and change status), delete drafts."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from levered.schemas.optimizations import (
    Deleted,
    OptimizationCreate,
    OptimizationList,
    OptimizationResponse,
    OptimizationUpdate,
    VariantPage,
    with_meta,
)
from levered.server.envelope import meta
from levered.services import optimizations as service
from levered.services.auth import Principal

ListLimit = Annotated[int, QueryParameter(ge=1, le=100, description="At most this many, 1–100.")]
IncludeArchived = Annotated[bool, QueryParameter(description="Also list archived optimizations.")]
VariantLimit = Annotated[int, QueryParameter(ge=1, le=1000, description="Page size, 1–1000.")]
Offset = Annotated[int, QueryParameter(ge=0, description="Variants to skip (numbers start at 1).")]


class OptimizationController(Controller):
    path = "/api/v2/optimizations"
    tags = ("optimizations",)

    @post(summary="Create an optimization (live unless `draft`) with its untrained model.")
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[OptimizationCreate],
    ) -> OptimizationResponse:
        pool = request.app.state.pool
        return with_meta(
            await service.create_optimization(pool, principal.organization_id, data),
            meta(request, principal.organization_id),
        )

    @get(summary="List optimizations, newest first; archived ones only when asked.")
    async def list_optimizations(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        limit: ListLimit = 10,
        include_archived: IncludeArchived = False,
    ) -> OptimizationList:
        items = await service.list_optimizations(
            request.app.state.pool,
            principal.organization_id,
            limit=limit,
            include_archived=include_archived,
        )
        return OptimizationList(items, meta(request, principal.organization_id))

    @get("/{optimization_id:uuid}", summary="Show one optimization with its metric and model.")
    async def show(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
    ) -> OptimizationResponse:
        found = await service.get_optimization(
            request.app.state.pool, principal.organization_id, optimization_id
        )
        return with_meta(found, meta(request, principal.organization_id))

    @patch(
        "/{optimization_id:uuid}",
        summary="Rename, edit settings, or change status (409 invalid_transition names the "
        "allowed ones). Factors, levels, context factors, exclusions and model type change "
        "only in draft.",
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
        data: JSONBody[OptimizationUpdate],
    ) -> OptimizationResponse:
        updated = await service.update_optimization(
            request.app.state.pool, principal.organization_id, optimization_id, data
        )
        return with_meta(updated, meta(request, principal.organization_id))

    @delete(
        "/{optimization_id:uuid}",
        status_code=200,
        summary="Delete a draft and its model. Anything else: 409, archive it instead.",
    )
    async def delete_draft(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
    ) -> Deleted:
        deleted = await service.delete_optimization(
            request.app.state.pool, principal.organization_id, optimization_id
        )
        return Deleted(deleted, True, meta(request, principal.organization_id))

    @get(
        "/{optimization_id:uuid}/variants",
        summary="Page through the variant space in number order (variant 1 is the baseline).",
    )
    async def variants(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
        limit: VariantLimit = 100,
        offset: Offset = 0,
    ) -> VariantPage:
        page, total = await service.list_variants(
            request.app.state.pool,
            principal.organization_id,
            optimization_id,
            limit=limit,
            offset=offset,
        )
        return VariantPage(page, total, limit, offset, meta(request, principal.organization_id))
