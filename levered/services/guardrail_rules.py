"""The rules of an optimization's guardrail list (create and PATCH), apart from the evaluation.

Shapes and single-field ranges (direction, ``tolerance_percent > 0``, unknown fields) are the
wire Struct's (:class:`levered.schemas.optimizations.Guardrail`); what needs the list as a
whole or the database is here: at most :data:`MAX_GUARDRAILS`, each metric once, and each a
metric of the caller's organization — a 400 naming ``$.guardrails[i].metric_id``, with the
same message whether the id exists in another organization or nowhere (as for the reward
metric).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from uuid import UUID

from levered.db import Connection
from levered.db import optimizations as db
from levered.errors import ValidationError
from levered.schemas.optimizations import Guardrail

MAX_GUARDRAILS: Final = 10
"""Each guardrail is one more attribution of the optimization's exposures per pass."""


async def check(conn: Connection, organization_id: UUID, guardrails: Sequence[Guardrail]) -> None:
    """Raise a 400 listing every problem of the list, or return."""
    issues: list[dict[str, str]] = []
    if len(guardrails) > MAX_GUARDRAILS:
        issues.append(
            {
                "path": "$.guardrails",
                "message": f"at most {MAX_GUARDRAILS} guardrails, got {len(guardrails)}",
            }
        )
    seen: dict[UUID, int] = {}
    for i, guardrail in enumerate(guardrails):
        path = f"$.guardrails[{i}].metric_id"
        if guardrail.metric_id in seen:
            issues.append(
                {
                    "path": path,
                    "message": f"metric {guardrail.metric_id} is already a guardrail (at "
                    f"$.guardrails[{seen[guardrail.metric_id]}]); each metric at most once",
                }
            )
            continue
        seen[guardrail.metric_id] = i
        if await db.find_metric(conn, organization_id, guardrail.metric_id) is None:
            issues.append(
                {
                    "path": path,
                    "message": f"no metric {guardrail.metric_id} in this organization; create "
                    "one with POST /api/v2/metrics",
                }
            )
    if issues:
        first = issues[0]
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise ValidationError(
            f"invalid request body at {first['path']}: {first['message']}{more}", details=issues
        )
