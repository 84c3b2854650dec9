"""Who is calling: resolve a bearer token or API key to a :class:`Principal`.

Nothing is cached, so a revoked key or token is refused on the very next request.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

import asyncpg
import msgspec

from levered.db import credentials as db
from levered.errors import AuthenticationError
from levered.schemas.organizations import ROLE_NAMED, Role
from levered.services.scopes import ALL_SCOPES
from levered.services.tokens import API_KEY_PREFIX, api_key_prefix, digest, same_digest

ACCESS_TOKEN_PREFIX = "lvat_"
INVALID_API_KEY = (
    "invalid API key: no such key (mistyped, truncated or deleted); keys look like "
    "lvk_<8 characters>_<secret>, as `levered api-keys create` prints them once"
)


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller; every query is scoped to ``organization_id``."""

    organization_id: UUID
    kind: Literal["api_key", "user"]
    api_key_id: UUID | None = None
    user_id: UUID | None = None
    scopes: frozenset[str] = ALL_SCOPES
    """An API key's scopes; a user's token carries all (checked per route in the server)."""
    role: Role | None = None
    """A user's role in ``organization_id`` (:mod:`levered.services.roles`); None for a key."""
    server_admin: bool = False
    client_id: str | None = None
    """The OAuth client a user's token was issued to (``orgs switch`` issues to the same)."""


async def authenticate(
    pool: asyncpg.Pool, token: str | None, *, api_key_only: bool = False
) -> Principal:
    if not token:
        raise AuthenticationError(
            "missing credentials: send 'Authorization: Bearer <token or API key>'"
            + ("" if not api_key_only else " or 'X-API-Key: <API key>'")
        )
    prefix = api_key_prefix(token)
    if prefix is None and token.startswith(API_KEY_PREFIX):
        # An API key, just not one Levered issued (truncated or mistyped): say so, not that
        # the caller sent some other kind of credential.
        raise AuthenticationError(INVALID_API_KEY)
    async with pool.acquire() as conn:
        if prefix is not None:
            row = await db.find_api_key(conn, prefix)
            if row is None or not same_digest(row["secret_hash"], token):
                raise AuthenticationError(INVALID_API_KEY)
            if row["revoked_at"] is not None:
                raise AuthenticationError("this API key was revoked")
            await db.touch_api_key(conn, row["id"])
            return Principal(
                row["organization_id"],
                "api_key",
                api_key_id=row["id"],
                scopes=frozenset(row["scopes"]),
            )
        if api_key_only:
            raise AuthenticationError(
                "this endpoint takes an API key (lvk_…), not a user's access token (lvat_…)"
                if token.startswith(ACCESS_TOKEN_PREFIX)
                else "unrecognized credentials: this endpoint takes an API key (lvk_…)"
            )
        if token.startswith(ACCESS_TOKEN_PREFIX):
            row = await db.find_access_token(conn, digest(token))
            if row is not None:
                if row["role"] is None:
                    raise AuthenticationError(
                        "you are no longer a member of this token's organization; log in again"
                    )
                return Principal(
                    row["organization_id"],
                    "user",
                    user_id=row["user_id"],
                    role=ROLE_NAMED[row["role"]],
                    server_admin=row["is_server_admin"],
                    client_id=row["client_id"],
                )
            raise AuthenticationError(
                "access token invalid, expired or revoked; log in again or refresh it"
            )
    raise AuthenticationError(
        "unrecognized credentials: expected an API key (lvk_…) or an access token (lvat_…)"
    )
