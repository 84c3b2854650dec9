"""Wire schemas of the login flow (``/oauth/*``) and of ``GET /api/v2/me``.

The OAuth request Structs deliberately do *not* forbid unknown fields: RFC 6749 §3.1 and §3.2
require an authorization server to ignore parameters it does not recognize. Every field is
optional so that a missing parameter is reported by the service in OAuth's own error format
(``invalid_request``) rather than as a generic validation error.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

import msgspec

from levered.schemas.common import ResponseMeta


class AuthorizeParams(msgspec.Struct, frozen=True):
    """The authorization request of RFC 6749 §4.1.1 with PKCE (RFC 7636 §4.3)."""

    response_type: str | None = None
    client_id: str | None = None
    redirect_uri: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    state: str | None = None
    organization: str | None = None
    """Not OAuth: which organization (id or name) the login acts for; default the first."""


class LoginForm(msgspec.Struct, frozen=True):
    """The login form posted back to ``/oauth/authorize``: credentials plus the authorization
    request carried in hidden fields (validated again, never trusted)."""

    email: str | None = None
    password: str | None = None
    response_type: str | None = None
    client_id: str | None = None
    redirect_uri: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    state: str | None = None
    organization: str | None = None

    def params(self) -> AuthorizeParams:
        return AuthorizeParams(
            self.response_type,
            self.client_id,
            self.redirect_uri,
            self.code_challenge,
            self.code_challenge_method,
            self.state,
            self.organization,
        )


class TokenRequest(msgspec.Struct, frozen=True):
    """``POST /oauth/token``: RFC 6749 §4.1.3 (with RFC 7636 ``code_verifier``) and §6."""

    grant_type: str | None = None
    code: str | None = None
    redirect_uri: str | None = None
    client_id: str | None = None
    code_verifier: str | None = None
    refresh_token: str | None = None


class RevokeRequest(msgspec.Struct, frozen=True):
    """``POST /oauth/revoke`` (RFC 7009 §2.1)."""

    token: str | None = None
    token_type_hint: str | None = None
    client_id: str | None = None


class TokenResponse(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 6749 §5.1; no ``meta``: OAuth clients expect exactly this shape."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    scope: str = ""


class OAuthErrorBody(msgspec.Struct, frozen=True):
    """RFC 6749 §5.2 error response (used by ``/oauth/token`` and ``/oauth/revoke`` only)."""

    error: str
    error_description: str


class MeUser(msgspec.Struct, frozen=True):
    id: UUID
    email: str
    name: str


class MeOrganization(msgspec.Struct, frozen=True):
    id: UUID
    name: str
    warehouse_provider: str


class Me(msgspec.Struct, frozen=True, kw_only=True):
    """Who the caller is: ``user`` and ``role`` are null when the caller uses an API key."""

    user: MeUser | None
    organization: MeOrganization
    auth: Literal["user", "api_key"]
    meta: ResponseMeta
    role: Literal["admin", "member", "viewer"] | None = None
    """The user's role in ``organization``."""
    server_admin: bool = False
    """Whether the user may create organizations."""
    scopes: list[str] | None = None
    """An API key's scopes (``ingest``, ``serve``, ``read``, ``admin``, in that order); null for
    a user, whose role decides instead."""
