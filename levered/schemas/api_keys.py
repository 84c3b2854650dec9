"""Wire schemas of the API-key resource (``/api/v2/api-keys``).

The secret appears in exactly one body, :class:`ApiKeyCreated`; lists and revocations never
carry it (the server keeps only its SHA-256 and could not show it again anyway).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from levered.schemas.common import ResponseMeta

Label = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        description="What the key is for, e.g. 'checkout service (prod)'.",
    ),
]


Scope = Literal["ingest", "serve", "read", "admin"]
Scopes = Annotated[
    list[Scope],
    msgspec.Meta(
        min_length=1,
        max_length=4,
        description="What the key may do: ingest, serve, read, admin (admin implies the rest).",
    ),
]


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    label: Label
    scopes: Scopes = msgspec.field(default_factory=lambda: ["admin"])


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as listed: its visible prefix and timestamps, never the secret."""

    id: UUID
    label: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyResponse(ApiKey, frozen=True, kw_only=True):
    meta: ResponseMeta


class ApiKeyCreated(ApiKey, frozen=True, kw_only=True):
    """The creation response: the only time the full secret is shown."""

    secret: str
    meta: ResponseMeta


class ApiKeyList(msgspec.Struct, frozen=True):
    api_keys: list[ApiKey]
    meta: ResponseMeta
