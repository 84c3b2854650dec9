"""Report data: one document with everything about an optimization, for notebooks and reports.

Results, guardrails, progress and lift history as their own endpoints give them, computed in one
request: the results are computed once and progress is read off them
(:func:`levered.services.progress.progress_of`), so the document is consistent with itself.
Evaluating the guardrails may pause the optimization (an ``auto_pause`` guardrail), exactly as
``GET …/guardrails`` does; ``status`` is the status after that.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from levered.schemas.analysis import ReportData
from levered.schemas.common import ResponseMeta
from levered.services import guardrails, lift_history, progress
from levered.services import optimizations as optimizations_service
from levered.services import results as results_service
from levered.services.warehouse import Warehouse


async def report_data(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    threshold: float,
    limit: int,
    meta: ResponseMeta,
) -> ReportData:
    """404 for another organization's optimization (before anything is computed)."""
    optimization = await optimizations_service.get_optimization(
        wh.pool, organization_id, optimization_id
    )
    found = await results_service.results(
        wh, organization_id, optimization_id, limit=limit, meta=meta
    )
    judged = await guardrails.evaluate(wh, organization_id, optimization_id)
    history = await lift_history.lift_history(wh, organization_id, optimization_id, meta=None)
    return ReportData(
        optimization_id=optimization_id,
        name=optimization.name,
        status=judged.status,
        results=found,
        guardrails=judged,
        progress=progress.progress_of(found, judged.status, threshold=threshold, limit=limit),
        lift_history=history,
        generated_at=datetime.now(UTC),
        meta=meta,
    )
