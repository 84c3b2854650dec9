"""``/api/v2/metrics``: create (dry-run checked), list, show, preview, delete."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from levered.schemas.metrics import (
    MetricCreate,
    MetricDeleted,
    MetricList,
    MetricPreview,
    MetricResponse,
)
from levered.schemas.warehouse import MAX_PREVIEW_ROWS
from levered.server.envelope import meta
from levered.server.warehouse import warehouse_of
from levered.services import metrics as service
from levered.services.auth import Principal

ListLimit = Annotated[int, Parameter(ge=1, le=1000, description="At most this many, 1–1000.")]
PreviewLimit = Annotated[
    int, Parameter(ge=1, le=MAX_PREVIEW_ROWS, description=f"Rows to show, 1–{MAX_PREVIEW_ROWS}.")
]


class MetricController(Controller):
    path = "/api/v2/metrics"
    tags = ("metrics",)

    @post(
        summary="Create a metric. Its SQL is dry-run as the organization first; 400 names the "
        "column or the SQL problem.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[MetricCreate],
    ) -> MetricResponse:
        org = principal.organization_id
        return await service.create_metric(warehouse_of(request), org, data, meta(request, org))

    @get(summary="List the organization's metrics, newest first.")
    async def list_metrics(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        limit: ListLimit = 100,
    ) -> MetricList:
        org = principal.organization_id
        return await service.list_metrics(warehouse_of(request), org, limit, meta(request, org))

    @get("/{metric_id:uuid}", summary="Show one metric.")
    async def show(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        metric_id: FromPath[UUID],
    ) -> MetricResponse:
        org = principal.organization_id
        return await service.get_metric(warehouse_of(request), org, metric_id, meta(request, org))

    @get(
        "/{metric_id:uuid}/preview",
        summary="Run the metric over all time; its newest rows as anonymous_id, timestamp, value.",
    )
    async def preview(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        metric_id: FromPath[UUID],
        limit: PreviewLimit = 10,
    ) -> MetricPreview:
        org = principal.organization_id
        return await service.preview_metric(
            warehouse_of(request), org, metric_id, limit, meta(request, org)
        )

    @delete(
        "/{metric_id:uuid}",
        status_code=200,
        summary="Delete a metric; 409 while any optimization uses it (the 409 names them).",
    )
    async def remove(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        metric_id: FromPath[UUID],
    ) -> MetricDeleted:
        org = principal.organization_id
        return await service.delete_metric(
            warehouse_of(request), org, metric_id, meta(request, org)
        )
