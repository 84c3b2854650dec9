"""Wire Structs of serving (docs/serving.md): the request and the decision it returns."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import Meta

from levered.schemas.common import ResponseMeta

AnonymousId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=512,
        description="The user's stable id, 1–512 characters; a random one is made when absent.",
    ),
]
Context = Annotated[
    dict[str, Any],
    Meta(
        description="Context factor → value (a string or boolean as the factor's dtype says). "
        "A key that is not a context factor of the optimization is refused (400 naming it)."
    ),
]
Level = str | bool


class ServeRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    anonymous_id: AnonymousId | None = None
    context: Context | None = None
    dry_run: bool = False
    """Decide the same way but write nothing (no exposure, no sticky assignment)."""


class BestVariantRequest(ServeRequest, forbid_unknown_fields=True, frozen=True, kw_only=True):
    optimization_id: UUID


class Served(msgspec.Struct, frozen=True):
    """One decision. ``model_version`` is null before the first training (uniform serving)."""

    optimization_id: UUID
    anonymous_id: str
    variant: dict[str, Level]
    variant_number: int
    variant_key: str
    holdout: bool
    propensity: float
    model_version: int | None
    decision_id: UUID


class ServeResponse(Served, frozen=True, kw_only=True):
    meta: ResponseMeta


def with_meta(served: Served, meta: ResponseMeta) -> ServeResponse:
    return ServeResponse(
        served.optimization_id,
        served.anonymous_id,
        served.variant,
        served.variant_number,
        served.variant_key,
        served.holdout,
        served.propensity,
        served.model_version,
        served.decision_id,
        meta=meta,
    )
