"""API keys: create (the secret is returned once), list, revoke.

Revocation takes effect on the next request because authentication reads the key's row every
time (:mod:`levered.services.auth` caches nothing).
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

import asyncpg

from levered.db import api_keys as db
from levered.db.organizations import insert_api_key
from levered.errors import NotFound
from levered.schemas.api_keys import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyResponse,
)
from levered.schemas.common import ResponseMeta
from levered.services.auth import Principal
from levered.services.scopes import normalize_scopes
from levered.services.tokens import digest, new_api_key

FIELDS: Final = ("id", "label", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")


def _fields(record: asyncpg.Record) -> dict[str, Any]:
    fields = {name: record[name] for name in FIELDS}
    fields["scopes"] = list(fields["scopes"])
    return fields


async def create_api_key(
    pool: asyncpg.Pool, principal: Principal, data: ApiKeyCreate, meta: ResponseMeta
) -> ApiKeyCreated:
    secret, prefix = new_api_key()
    async with pool.acquire() as conn:
        record = await insert_api_key(
            conn,
            principal.organization_id,
            data.label,
            prefix,
            digest(secret),
            normalize_scopes(data.scopes),
        )
    return ApiKeyCreated(**_fields(record), secret=secret, meta=meta)


async def list_api_keys(pool: asyncpg.Pool, principal: Principal, meta: ResponseMeta) -> ApiKeyList:
    """Every key of the caller's organization, revoked ones included, newest first."""
    async with pool.acquire() as conn:
        records = await db.list_api_keys(conn, principal.organization_id)
    return ApiKeyList([ApiKey(**_fields(record)) for record in records], meta)


async def revoke_api_key(
    pool: asyncpg.Pool, principal: Principal, key_id: UUID, meta: ResponseMeta
) -> ApiKeyResponse:
    """Revoke one of the caller's keys; another organization's key is indistinguishable from
    an unknown one (404), so ids cannot be probed across tenants."""
    async with pool.acquire() as conn:
        record = await db.revoke_api_key(conn, key_id, principal.organization_id)
    if record is None:
        raise NotFound(f"no API key {key_id}")
    return ApiKeyResponse(**_fields(record), meta=meta)
