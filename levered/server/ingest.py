"""``POST /api/v2/ingest/exposures`` and ``/rewards``: the managed warehouse's front door.

Thin on purpose: the handler hands the raw body to :mod:`levered.services.ingest`, which decodes
it with reused msgspec decoders (two steps, so one bad event is a 207 and not a 400), and picks
200 or 207 from the outcome. Bodies over 5 MB are refused by Litestar while streaming (413 in
the error envelope). Authentication is the API-key dependency: ``Authorization: Bearer`` or
``X-API-Key``; a user access token is refused.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency

from levered.db.pool import database_deadline
from levered.schemas.ingest import MAX_BODY_BYTES, IngestResult
from levered.server.envelope import meta
from levered.services.auth import Principal
from levered.services.ingest import IngestOutcome, ingest_exposures, ingest_rewards

_DESCRIPTION = (
    'Body `{"events": [...]}` with 1–500 events; the event schemas are in the document\'s '
    "components (from the decoders' types, levered.server.openapi), the body is read raw. "
    "200: every event stored or already stored under its idempotency key. 207: the valid "
    "events were stored, `rejected` lists the others. 400: not JSON, wrong shape, 0 or more "
    "than 500 events, or no valid event (`details` names each problem by JSON path). 403: an "
    "optimization_id is unknown or another organization's (nothing stored). 409: the "
    "organization is not on the managed warehouse. 413: body over 5 MB. 503: storage failed, "
    "nothing stored, retry after `Retry-After` seconds; also when the database does not answer "
    "within 5 s (`details.cause` `database_timeout`: the batch may or may not be stored, so "
    "resend it with the same idempotency keys)."
)


class IngestController(Controller):
    path = "/api/v2/ingest"
    tags = ("ingestion",)
    request_max_body_size = MAX_BODY_BYTES

    @post("/exposures", summary="Store a batch of exposures.", description=_DESCRIPTION)
    async def exposures(
        self, request: Request[Any, Any, Any], api_principal: NamedDependency[Principal]
    ) -> Response[IngestResult]:
        body = await request.body()
        async with database_deadline("storing the batch"):
            outcome = await ingest_exposures(
                request.app.state.pool, api_principal.organization_id, body
            )
        return _response(request, api_principal, outcome)

    @post("/rewards", summary="Store a batch of rewards.", description=_DESCRIPTION)
    async def rewards(
        self, request: Request[Any, Any, Any], api_principal: NamedDependency[Principal]
    ) -> Response[IngestResult]:
        body = await request.body()
        async with database_deadline("storing the batch"):
            outcome = await ingest_rewards(
                request.app.state.pool, api_principal.organization_id, body
            )
        return _response(request, api_principal, outcome)


def _response(
    request: Request[Any, Any, Any], principal: Principal, outcome: IngestOutcome
) -> Response[IngestResult]:
    body = IngestResult(
        outcome.accepted,
        outcome.duplicates,
        outcome.rejected,
        meta(request, principal.organization_id),
    )
    return Response(body, status_code=207 if outcome.rejected else 200)
