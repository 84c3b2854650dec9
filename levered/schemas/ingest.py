"""Wire types of the ingestion API (README, "HTTP API"; the event schemas in the OpenAPI document).

A request body is first decoded in one pass as :class:`RawExposureBatch` / :class:`RewardBatch`
(the common case: every event valid; :class:`ExposureBatch` is the documented exposure
shape). When that fails, it is decoded again in two steps so that
one bad event rejects only itself (207), not the whole batch (400): first :class:`Batch`, whose
events stay undecoded :class:`msgspec.Raw` slices of the body, then each event with the typed
decoder of its kind, which names the failing event and field. Every decoder is made once here
and reused (measured: ~0.4 µs per event).

Rules that need the database (the optimization's design factors, its organization) or the clock
(at most 24 h ahead) are checked by :mod:`levered.services.ingest`; everything else is in the
types below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec
from msgspec import Meta

from levered.schemas.common import ResponseMeta

MAX_EVENTS: Final = 500
MAX_BODY_BYTES: Final = 5 * 1024 * 1024

AnonymousId = Annotated[str, Meta(min_length=1, max_length=512)]
EventName = Annotated[str, Meta(min_length=1, max_length=255)]
IdempotencyKey = Annotated[str, Meta(min_length=1, max_length=256)]
EventTime = Annotated[datetime, Meta(tz=True)]
"""ISO 8601 / RFC 3339 with an offset: a naive time is ambiguous, so it is refused."""


class Batch(msgspec.Struct, forbid_unknown_fields=True):
    """The request envelope; events are decoded one by one afterwards."""

    events: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=MAX_EVENTS)]


class ExposureEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    anonymous_id: AnonymousId
    optimization_id: UUID
    variant: dict[str, Any]
    context: dict[str, Any] = {}
    timestamp: EventTime | None = None
    idempotency_key: IdempotencyKey | None = None


class RewardEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    anonymous_id: AnonymousId
    name: EventName
    value: float = 1.0
    timestamp: EventTime | None = None
    optimization_id: UUID | None = None
    properties: dict[str, Any] = {}
    idempotency_key: IdempotencyKey | None = None


class Rejection(msgspec.Struct, frozen=True):
    """One event that was not stored: its position in ``events``, why, and where."""

    index: int
    code: str
    message: str
    path: str


class IngestResult(msgspec.Struct, frozen=True):
    """``accepted``: events stored by this request; ``duplicates``: valid events not stored
    because their idempotency key was already stored (earlier, or earlier in this batch), or,
    for exposures, because a serve already recorded the same exposure (same optimization,
    anonymous id and variant within 60 s: its twin, docs/serving.md).
    ``accepted + duplicates + len(rejected)`` is the number of events sent."""

    accepted: int
    duplicates: int
    rejected: list[Rejection]
    meta: ResponseMeta


class ExposureBatch(msgspec.Struct, forbid_unknown_fields=True):
    """A whole exposure batch, decoded in one pass: the fast path when every event is valid."""

    events: Annotated[list[ExposureEvent], Meta(min_length=1, max_length=MAX_EVENTS)]


class RawExposureEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """:class:`ExposureEvent` with ``variant`` and ``context`` left as their JSON text: the hot
    path stores that text as jsonb as it came (no dicts built, none encoded again) and decodes
    a variant only once per distinct text. Not a wire type of its own: the service checks that
    both are JSON objects and otherwise decodes the body as :class:`ExposureBatch`, whose
    errors name the field."""

    anonymous_id: AnonymousId
    optimization_id: UUID
    variant: msgspec.Raw
    context: msgspec.Raw = msgspec.Raw(b"{}")
    timestamp: EventTime | None = None
    idempotency_key: IdempotencyKey | None = None


class RawExposureBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[RawExposureEvent], Meta(min_length=1, max_length=MAX_EVENTS)]


class RewardBatch(msgspec.Struct, forbid_unknown_fields=True):
    """A whole reward batch, decoded in one pass: the fast path when every event is valid."""

    events: Annotated[list[RewardEvent], Meta(min_length=1, max_length=MAX_EVENTS)]


BATCH_DECODER: Final = msgspec.json.Decoder(Batch)
EXPOSURE_BATCH_DECODER: Final = msgspec.json.Decoder(ExposureBatch)
RAW_EXPOSURE_BATCH_DECODER: Final = msgspec.json.Decoder(RawExposureBatch)
REWARD_BATCH_DECODER: Final = msgspec.json.Decoder(RewardBatch)
EXPOSURE_DECODER: Final = msgspec.json.Decoder(ExposureEvent)
REWARD_DECODER: Final = msgspec.json.Decoder(RewardEvent)
