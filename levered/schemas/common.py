"""Pieces every response shares: the ``meta`` block and the error envelope."""

from __future__ import annotations

from typing import Any

import msgspec


class ResponseMeta(msgspec.Struct, frozen=True):
    request_id: str
    organization_id: str | None = None


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    message: str
    details: Any = None


class ErrorMeta(msgspec.Struct, frozen=True):
    request_id: str


class ErrorEnvelope(msgspec.Struct, frozen=True):
    error: ErrorBody
    meta: ErrorMeta


class Health(msgspec.Struct, frozen=True):
    status: str
    version: str


class Readiness(msgspec.Struct, frozen=True):
    status: str
    database: str
    migrations: str
