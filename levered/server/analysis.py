"""Analysis surfaces of one optimization (docs/analysis.md): guardrails, progress, lift
history and the report document. Thin: each handler calls one service function."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from levered.schemas.analysis import GuardrailReport
from levered.server.envelope import meta
from levered.services import guardrails
from levered.services.auth import Principal
from levered.services.warehouse import Warehouse


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
