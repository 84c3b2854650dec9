"""Analysis surfaces of one optimization (docs/analysis.md): guardrails, progress, lift
history and the report document. Thin: each handler calls one service function."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from levered.schemas.analysis import GuardrailReport, LiftHistory, Progress, ReportData
from levered.server.envelope import meta
from levered.services import guardrails
from levered.services import lift_history as history_service
from levered.services import progress as progress_service
from levered.services import report as report_service
from levered.services.auth import Principal
from levered.services.warehouse import Warehouse

Threshold = Annotated[
    float,
    QueryParameter(
        gt=0.5, lt=1, description="prob_best at which the leader counts as certain, 0.5–1."
    ),
]
ArmLimit = Annotated[
    int, QueryParameter(ge=1, le=1000, description="At most this many arms, by prob_best.")
]

VariantLimit = Annotated[
    int, QueryParameter(ge=1, le=10000, description="At most this many variants, by weight.")
]


class AnalysisController(Controller):
    path = "/api/v2/optimizations/{optimization_id:uuid}"
    tags = ("optimizations",)

    @get(
        "/guardrails",
        summary="Guardrails: each guardrail metric optimized vs holdout per user (change %, "
        "95 % log-ratio interval), status ok / violated / pending; a violated guardrail with "
        "auto_pause pauses a live optimization (status_reason says why).",
    )
    async def guardrails(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
    ) -> GuardrailReport:
        return await guardrails.evaluate(
            Warehouse.from_state(request.app.state),
            principal.organization_id,
            optimization_id,
            meta=meta(request, principal.organization_id),
        )

    @get(
        "/progress",
        summary="Progress: days running, users per arm, the leader's prob_best against "
        "`threshold`, and an expected time to decision (z-scaling of the leader vs the "
        "runner-up at the recent traffic rate; docs/analysis.md).",
    )
    async def progress(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
        threshold: Threshold = 0.95,
        limit: ArmLimit = 20,
    ) -> Progress:
        return await progress_service.progress(
            Warehouse.from_state(request.app.state),
            principal.organization_id,
            optimization_id,
            threshold=threshold,
            limit=limit,
            meta=meta(request, principal.organization_id),
        )

    @get(
        "/lift-history",
        summary="Lift history: per UTC day of exposure, the measured lift optimized vs "
        "holdout of that day's users (daily) and as it stood at the end of the day "
        "(cumulative), each with its 95 % log-ratio interval, and the modeled lift of the "
        "last model version trained by the day's end.",
    )
    async def lift_history(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
    ) -> LiftHistory:
        return await history_service.lift_history(
            Warehouse.from_state(request.app.state),
            principal.organization_id,
            optimization_id,
            meta=meta(request, principal.organization_id),
        )

    @get(
        "/report-data",
        summary="Report data: results, guardrails, progress and lift history in one document, "
        "for notebooks and reports (evaluating the guardrails may auto-pause, as "
        "GET .../guardrails does).",
    )
    async def report_data(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        optimization_id: FromPath[UUID],
        threshold: Threshold = 0.95,
        limit: VariantLimit = 100,
    ) -> ReportData:
        return await report_service.report_data(
            Warehouse.from_state(request.app.state),
            principal.organization_id,
            optimization_id,
            threshold=threshold,
            limit=limit,
            meta=meta(request, principal.organization_id),
        )
