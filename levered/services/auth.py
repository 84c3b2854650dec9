"""Who is calling: resolve a bearer token or API key to a :class:`Principal`.

Nothing is cached, so a revoked key or token is refused on the very next request. Only the
record of a key's use is throttled: ``last_used_at`` is written at most every
:data:`TOUCH_EVERY_S` per key and process, decided here rather than by the UPDATE's own
condition, so a hot ingestion client costs one round trip per request for its key, not two.
"""

from __future__ import annotations

import time
from typing import Final, Literal
from uuid import UUID

import asyncpg
import msgspec

from levered.db import credentials as db
from levered.db.pool import stateless
from levered.errors import AuthenticationError
from levered.schemas.organizations import ROLE_NAMED, Role
from levered.services.scopes import ALL_SCOPES
from levered.services.tokens import API_KEY_PREFIX, api_key_prefix, digest, same_digest

ACCESS_TOKEN_PREFIX = "lvat_"
INVALID_API_KEY = (
    "invalid API key: no such key (mistyped, truncated or deleted); keys look like "
    "lvk_<8 characters>_<secret>, as `levered api-keys create` prints them once"
)


TOUCH_EVERY_S: Final = 30.0
_TOUCHED_CAPACITY: Final = 10_000
_touched: dict[UUID, float] = {}
"""Key id → when this process last recorded its use (monotonic seconds)."""


def _use_to_record(key_id: UUID) -> bool:
    """True at most once per :data:`TOUCH_EVERY_S` for a key in this process."""
    now = time.monotonic()
    last = _touched.get(key_id)
    if last is not None and now - last < TOUCH_EVERY_S:
        return False
    if len(_touched) >= _TOUCHED_CAPACITY:
        _touched.clear()  # at worst one extra, harmless UPDATE per key
    _touched[key_id] = now
    return True


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
    async with stateless(pool) as conn:
        if prefix is not None:
            row = await db.find_api_key(conn, prefix)
            if row is None or not same_digest(row["secret_hash"], token):
                raise AuthenticationError(INVALID_API_KEY)
            if row["revoked_at"] is not None:
                raise AuthenticationError("this API key was revoked")
            if _use_to_record(row["id"]):
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
