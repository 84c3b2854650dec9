"""``/api/v2/models``: list, show, state, train now, soft delete; and the scheduler's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Litestar, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from levered.schemas.models import (
    ModelDeleted,
    ModelList,
    ModelResponse,
    ModelState,
    ModelVersionResponse,
    TrainRequest,
    version_with_meta,
    with_meta,
)
from levered.server.context_query import ContextQuery, parse_context
from levered.server.envelope import meta
from levered.services import models as service
from levered.services import training
from levered.services.auth import Principal
from levered.services.scheduler import Scheduler
from levered.services.warehouse import Warehouse
from levered.settings import Settings

ListLimit = Annotated[int, QueryParameter(ge=1, le=100, description="At most this many, 1–100.")]
IncludeArchived = Annotated[
    bool, QueryParameter(description="Also list models of archived optimizations.")
]
VariantLimit = Annotated[
    int, QueryParameter(ge=1, le=10000, description="At most this many variants, by weight.")
]
Seed = Annotated[
    int | None,
    QueryParameter(ge=0, lt=2**62, description="Seed stored with the version (random if absent)."),
]

Rebuild = Annotated[
    bool,
    QueryParameter(
        description="Rebuild the stored observation cells from scratch before training."
    ),
]


class ModelController(Controller):
    path = "/api/v2/models"
    tags = ("models",)

    @get(summary="List models (one per optimization), newest first.")
    async def list_models(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        limit: ListLimit = 10,
        include_archived: IncludeArchived = False,
    ) -> ModelList:
        items = await service.list_models(
            request.app.state.pool,
            principal.organization_id,
            limit=limit,
            include_archived=include_archived,
        )
        return ModelList(items, meta(request, principal.organization_id))

    @get("/{model_id:uuid}", summary="Show one model: status, current version, last error.")
    async def show(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        model_id: FromPath[UUID],
    ) -> ModelResponse:
        found = await service.get_model(request.app.state.pool, principal.organization_id, model_id)
        return with_meta(found, meta(request, principal.organization_id))

    @get(
        "/{model_id:uuid}/state",
        summary="The current version per variant (expected reward with 95 % interval, "
        "prob_best, traffic weight), its window, counts and seed; uniform when untrained.",
    )
    async def state(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        model_id: FromPath[UUID],
        limit: VariantLimit = 100,
        context: ContextQuery = None,
    ) -> ModelState:
        return await service.model_state(
            request.app.state.pool,
            principal.organization_id,
            model_id,
            limit=limit,
            meta=meta(request, principal.organization_id),
            context=parse_context(context),
        )

    @post(
        "/{model_id:uuid}/train",
        summary="Train now and publish a new version (serving picks it up within seconds). "
        "409 `training_in_progress` when another run holds the model, `no_reward_metric`, "
        "`metric_failed`, `exposures_table_invalid`, `training_failed` (the model is then "
        "`failed`).",
        description='Optional body `{"bias": {factor: b}}` (0 ≤ b ≤ 10): widen the posterior '
        "of each named design factor's effects (sd × (1 + b), means unchanged) so Thompson "
        "sampling explores its levels more. Without `bias` the current version's bias is kept "
        "(the scheduler's retrains keep it too); `{}` clears it. An unknown factor is a 400. "
        "`?rebuild=true` rebuilds the stored observation cells from the raw events first "
        "(otherwise only what changed since the last pass is re-attributed).",
    )
    async def train(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        model_id: FromPath[UUID],
        seed: Seed = None,
        rebuild: Rebuild = False,
        data: JSONBody[TrainRequest | None] = None,
    ) -> ModelVersionResponse:
        version = await training.train_model(
            Warehouse.from_state(request.app.state),
            principal.organization_id,
            model_id,
            seed=seed,
            bias=None if data is None else data.bias,
            rebuild=rebuild,
        )
        return version_with_meta(version, meta(request, principal.organization_id))

    @delete(
        "/{model_id:uuid}",
        status_code=200,
        summary="Soft-delete the model; its optimization gets a fresh untrained model and "
        "serving falls back to uniform traffic.",
    )
    async def delete_model(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        model_id: FromPath[UUID],
    ) -> ModelDeleted:
        return await service.delete_model(
            request.app.state.pool,
            principal.organization_id,
            model_id,
            meta(request, principal.organization_id),
        )


def scheduler_lifespan(
    settings: Settings,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The lifespan step after the pool: run the training scheduler unless disabled."""

    @asynccontextmanager
    async def scheduler(app: Litestar) -> AsyncIterator[None]:
        if not settings.scheduler:
            yield
            return
        task = Scheduler(Warehouse.from_state(app.state), settings.train_interval)
        task.start()
        try:
            yield
        finally:
            await task.close()

    return scheduler
