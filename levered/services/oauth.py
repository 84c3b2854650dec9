"""Users and login: OAuth 2.0 authorization code with PKCE for the CLI, and ``whoami``.

The CLI is a public native client (RFC 8252): it opens the browser on ``/oauth/authorize`` with
a PKCE S256 challenge (RFC 7636) and a loopback redirect URI on a port of its choosing, the user
signs in with email and password, and the CLI receives a single-use code on its loopback
listener and exchanges it with the verifier at ``/oauth/token``.

Decisions worth knowing:

* There is no client registry. ``client_id`` must be well formed and codes and tokens are bound
  to it, but security rests on PKCE and on the redirect URI being loopback-only (any port, per
  RFC 8252 §7.3), not on knowing the client.
* Only ``S256`` is accepted; ``plain`` (and a missing method, which RFC 7636 would read as
  plain) is refused. An S256 challenge is a base64url SHA-256, so exactly 43 characters.
* Codes live 60 s. Each login is a token *family* whose id is derived from the code's digest
  (the ``oauth_codes`` table has no family column), so a replayed code can find and revoke the
  tokens issued from it (RFC 6749 §4.1.2).
* Refresh tokens rotate on every use. Presenting an already-used refresh token revokes the
  whole family (theft detection, OAuth 2.0 Security BCP §4.14.2), with no grace period: a
  client that retries a refresh after losing the response must log in again.
* Token-endpoint errors are :class:`OAuthError` and are rendered in RFC 6749 §5.2's format by
  :mod:`levered.server.oauth`, not in the product's error envelope.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import secrets
from datetime import timedelta
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import anyio.to_thread
import asyncpg
import msgspec

from levered.db import Connection
from levered.db import oauth as db
from levered.db.memberships import find_member, user_organizations
from levered.errors import AuthenticationError, LeveredError, ValidationError
from levered.schemas.common import ResponseMeta
from levered.schemas.oauth import (
    AuthorizeParams,
    LoginForm,
    Me,
    MeOrganization,
    MeUser,
    RevokeRequest,
    TokenRequest,
    TokenResponse,
)
from levered.services.auth import Principal
from levered.services.passwords import hash_password, verify_password
from levered.services.scopes import normalize_scopes
from levered.services.tokens import digest, new_token

CODE_LIFETIME: Final = timedelta(seconds=60)
ACCESS_TOKEN_LIFETIME: Final = timedelta(hours=1)
REFRESH_TOKEN_LIFETIME: Final = timedelta(days=30)

CODE_PREFIX: Final = "lvac"
ACCESS_PREFIX: Final = "lvat"
REFRESH_PREFIX: Final = "lvrt"

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
CLIENT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
S256_CHALLENGE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
CODE_VERIFIER: Final = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
STATE: Final = re.compile(r"[\x20-\x7e]{1,500}")  # RFC 6749 Appendix A.5: VSCHAR
MAX_REDIRECT_URI: Final = 2000


class OAuthError(LeveredError):
    """An error of the token or revocation endpoint, in RFC 6749 §5.2 terms (``code`` is the
    OAuth ``error`` value)."""

    status = 400

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description, code=error)


class InvalidClient(OAuthError):
    status = 401

    def __init__(self, description: str) -> None:
        super().__init__("invalid_client", description)


class InvalidAuthorizeRequest(ValidationError):
    """The client or redirect URI is unusable: the user is told, never redirected
    (RFC 6749 §4.1.2.1), since redirecting would hand the response to an unchecked URI."""

    code = "invalid_request"


class AuthorizeErrorRedirect(LeveredError):
    """An authorization error that goes back to the (already validated, loopback) client as
    ``redirect_uri?error=…&error_description=…&state=…`` (RFC 6749 §4.1.2.1)."""

    status = 400

    def __init__(self, location: str, error: str, description: str) -> None:
        super().__init__(description, code=error)
        self.location = location


class LoginFailed(AuthenticationError):
    """Wrong email or password: the form is shown again with what the user typed (bar the
    password) and this message; nothing is redirected."""

    def __init__(self, message: str, request: AuthorizeRequest, email: str) -> None:
        super().__init__(message)
        self.request = request
        self.email = email


class AuthorizeRequest(msgspec.Struct, frozen=True):
    """An authorization request that passed every check."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    state: str | None
    organization: str | None = None
    """Which organization to act for (id or name), as the login form's own field."""

    def hidden_fields(self) -> dict[str, str]:
        fields = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
        }
        if self.state is not None:
            fields["state"] = self.state
        return fields


# --- the authorization endpoint -------------------------------------------------------------


def is_loopback_redirect(uri: str) -> bool:
    """``http://127.0.0.1``, ``http://[::1]`` or ``http://localhost``, any port, any path;
    no user info, no fragment, nothing a browser and Python could parse differently."""
    if len(uri) > MAX_REDIRECT_URI or not uri.isascii() or not uri.isprintable():
        return False
    if any(char in uri for char in " \\#"):
        return False
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed or out-of-range port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in LOOPBACK_HOSTS
        and parts.username is None
        and parts.password is None
    )


def with_query(uri: str, params: dict[str, str]) -> str:
    """``uri`` with ``params`` added to its query, keeping what it had (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit(parts._replace(query=query))


def check_authorize(params: AuthorizeParams) -> AuthorizeRequest:
    """Validate an authorization request, in the order RFC 6749 §4.1.2.1 implies: first what
    decides whether redirecting is safe, then everything else (reported by redirect)."""
    if not params.client_id:
        raise InvalidAuthorizeRequest("client_id is missing")
    if not CLIENT_ID.fullmatch(params.client_id):
        raise InvalidAuthorizeRequest("client_id is malformed")
    if not params.redirect_uri:
        raise InvalidAuthorizeRequest("redirect_uri is missing")
    if not is_loopback_redirect(params.redirect_uri):
        raise InvalidAuthorizeRequest(
            "redirect_uri must be a loopback address such as http://127.0.0.1:PORT/callback, "
            "http://[::1]:PORT/ or http://localhost:PORT/ (RFC 8252)"
        )
    state = params.state or None  # an empty state is no state
    if state is not None and not STATE.fullmatch(state):
        raise InvalidAuthorizeRequest("state must be 1–500 printable ASCII characters")

    def refuse(error: str, description: str) -> AuthorizeErrorRedirect:
        assert params.redirect_uri is not None
        fields = {"error": error, "error_description": description}
        if state is not None:
            fields["state"] = state
        return AuthorizeErrorRedirect(with_query(params.redirect_uri, fields), error, description)

    if params.response_type != "code":
        if not params.response_type:
            raise refuse("invalid_request", "response_type is missing")
        raise refuse("unsupported_response_type", "only response_type=code is supported")
    if params.code_challenge_method != "S256":
        raise refuse(
            "invalid_request",
            "code_challenge_method must be S256 (PKCE); plain is not accepted",
        )
    if not params.code_challenge or not S256_CHALLENGE.fullmatch(params.code_challenge):
        raise refuse(
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the code verifier (43 characters)",
        )
    organization = (params.organization or "").strip()[:200] or None
    return AuthorizeRequest(
        params.client_id, params.redirect_uri, params.code_challenge, state, organization
    )


@functools.cache
def _decoy_hash() -> str:
    """A hash to verify against when the email is unknown, so both failures cost the same."""
    return hash_password(secrets.token_urlsafe(16))


async def login(pool: asyncpg.Pool, form: LoginForm) -> str:
    """Check the credentials and issue a code; returns where to send the browser."""
    request = check_authorize(form.params())
    email = (form.email or "").strip()
    if not email or not form.password:
        raise LoginFailed("Enter your email and password.", request, email)
    async with pool.acquire() as conn:
        user = await db.find_user_by_email(conn, email)
        organizations = [] if user is None else await user_organizations(conn, user["id"])
    # argon2id takes tens of milliseconds of CPU: keep it off the event loop.
    password_hash: str = (
        user["password_hash"] if user is not None else await anyio.to_thread.run_sync(_decoy_hash)
    )
    ok = await anyio.to_thread.run_sync(verify_password, password_hash, form.password)
    if user is None or not ok:
        raise LoginFailed("Wrong email or password.", request, email)
    organization_id = _pick_organization(organizations, request, email)

    code = new_token(CODE_PREFIX)
    async with pool.acquire() as conn, conn.transaction():
        await db.delete_stale_codes(conn)
        await db.insert_code(
            conn,
            digest(code),
            user["id"],
            organization_id,
            request.client_id,
            request.redirect_uri,
            request.code_challenge,
            CODE_LIFETIME,
        )
    fields = {"code": code}
    if request.state is not None:
        fields["state"] = request.state
    return with_query(request.redirect_uri, fields)


def _pick_organization(
    organizations: list[asyncpg.Record], request: AuthorizeRequest, email: str
) -> UUID:
    """The organization the login acts for: the one named (by id or name) if the user belongs
    to it, else their first (oldest membership). Only asked after the password matched, and
    "not a member" reads the same whether the organization exists or not."""
    if not organizations:
        raise LoginFailed("This account belongs to no organization any more.", request, email)
    wanted = request.organization
    if wanted is None:
        found: UUID = organizations[0]["id"]
        return found
    matches = [
        r["id"]
        for r in organizations
        if str(r["id"]) == wanted or r["name"].lower() == wanted.lower()
    ]
    if len(matches) > 1:
        raise LoginFailed(
            f"You belong to several organizations named {wanted!r}: give its id.", request, email
        )
    if not matches:
        raise LoginFailed(f"You are not a member of an organization {wanted!r}.", request, email)
    return UUID(str(matches[0]))


# --- the token endpoint ---------------------------------------------------------------------


def s256(verifier: str) -> str:
    """BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) without padding (RFC 7636 §4.2)."""
    hashed = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode("ascii")


def family_of_code(code_hash: bytes) -> UUID:
    """The token family of the login a code starts, derived from the code's digest."""
    return UUID(bytes=code_hash[:16])


def _required(value: str | None, name: str) -> str:
    if not value:
        raise OAuthError("invalid_request", f"{name} is required")
    return value


def _client_id(value: str | None) -> str:
    if not value:
        raise InvalidClient("client_id is required (public clients identify themselves)")
    if not CLIENT_ID.fullmatch(value):
        raise InvalidClient("client_id is malformed")
    return value


async def exchange_token(pool: asyncpg.Pool, request: TokenRequest) -> TokenResponse:
    """``grant_type=authorization_code`` (with PKCE) or ``grant_type=refresh_token``."""
    grant = _required(request.grant_type, "grant_type")
    if grant == "authorization_code":
        return await _redeem_code(pool, request)
    if grant == "refresh_token":
        return await _refresh(pool, request)
    raise OAuthError(
        "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"
    )


async def issue_tokens(
    conn: Connection,
    family_id: UUID,
    user_id: UUID,
    organization_id: UUID,
    client_id: str,
) -> TokenResponse:
    access, refresh = new_token(ACCESS_PREFIX), new_token(REFRESH_PREFIX)
    await db.insert_token_pair(
        conn,
        digest(access),
        digest(refresh),
        family_id,
        user_id,
        organization_id,
        client_id,
        ACCESS_TOKEN_LIFETIME,
        REFRESH_TOKEN_LIFETIME,
    )
    return TokenResponse(
        access_token=access,
        expires_in=int(ACCESS_TOKEN_LIFETIME.total_seconds()),
        refresh_token=refresh,
    )


async def _redeem_code(pool: asyncpg.Pool, request: TokenRequest) -> TokenResponse:
    code = _required(request.code, "code")
    redirect_uri = _required(request.redirect_uri, "redirect_uri")
    verifier = _required(request.code_verifier, "code_verifier")
    client_id = _client_id(request.client_id)
    if not CODE_VERIFIER.fullmatch(verifier):
        raise OAuthError(
            "invalid_request", "code_verifier must be 43–128 characters of [A-Za-z0-9-._~]"
        )
    code_hash, challenge = digest(code), s256(verifier)
    async with pool.acquire() as conn, conn.transaction():
        row = await db.redeem_code(conn, code_hash, client_id, redirect_uri, challenge)
        if row is not None:
            return await issue_tokens(
                conn,
                family_of_code(code_hash),
                row["user_id"],
                row["organization_id"],
                client_id,
            )
        # Diagnose inside the transaction, so revoking a replayed code's tokens commits
        # even though the request then fails.
        failure = await _code_failure(conn, code_hash, client_id, redirect_uri, challenge)
    raise failure


async def _code_failure(
    conn: Connection,
    code_hash: bytes,
    client_id: str,
    redirect_uri: str,
    challenge: str,
) -> OAuthError:
    row = await db.find_code(conn, code_hash)
    if row is None:
        return OAuthError("invalid_grant", "unknown authorization code")
    if row["used_at"] is not None:
        await db.revoke_family(conn, family_of_code(code_hash))
        return OAuthError(
            "invalid_grant",
            "authorization code was already used; the tokens issued for it are revoked",
        )
    if not row["live"]:
        return OAuthError("invalid_grant", "authorization code expired; log in again")
    if row["client_id"] != client_id:
        return OAuthError("invalid_grant", "authorization code was issued to another client")
    if row["redirect_uri"] != redirect_uri:
        return OAuthError(
            "invalid_grant", "redirect_uri differs from the one of the authorization request"
        )
    if not secrets.compare_digest(row["code_challenge"], challenge):
        return OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
    # Only a concurrent redemption can lead here (the row changed between the statements).
    return OAuthError("invalid_grant", "authorization code is no longer valid")


async def _refresh(pool: asyncpg.Pool, request: TokenRequest) -> TokenResponse:
    token = _required(request.refresh_token, "refresh_token")
    client_id = None if request.client_id is None else _client_id(request.client_id)
    token_hash = digest(token)
    async with pool.acquire() as conn, conn.transaction():
        row = await db.rotate_refresh_token(conn, token_hash, client_id)
        if row is not None:
            if await find_member(conn, row["organization_id"], row["user_id"]) is None:
                raise OAuthError(
                    "invalid_grant",
                    "you are no longer a member of this organization; log in again",
                )
            return await issue_tokens(
                conn,
                row["family_id"],
                row["user_id"],
                row["organization_id"],
                row["client_id"],
            )
        failure = await _refresh_failure(conn, token_hash, client_id)
    raise failure


async def _refresh_failure(
    conn: Connection,
    token_hash: bytes,
    client_id: str | None,
) -> OAuthError:
    row = await db.find_refresh_token(conn, token_hash)
    if row is None:
        return OAuthError("invalid_grant", "unknown refresh token")
    if row["used_at"] is not None:
        await db.revoke_family(conn, row["family_id"])
        return OAuthError(
            "invalid_grant",
            "refresh token was already used, so it may have been stolen: every token of this "
            "login is revoked; log in again",
        )
    if row["revoked_at"] is not None:
        return OAuthError("invalid_grant", "refresh token was revoked; log in again")
    if not row["live"]:
        return OAuthError("invalid_grant", "refresh token expired; log in again")
    if client_id is not None and row["client_id"] != client_id:
        return OAuthError("invalid_grant", "refresh token was issued to another client")
    return OAuthError("invalid_grant", "refresh token is no longer valid")


async def revoke_token(pool: asyncpg.Pool, request: RevokeRequest) -> None:
    """RFC 7009: revoke an access token, or a refresh token with its whole family.

    Unknown, expired or already revoked tokens succeed silently (§2.2), and
    ``token_type_hint`` is only a hint (§2.1): both kinds share one table, found by digest.
    Holding a token is enough to revoke it, so ``client_id`` is not checked.
    """
    token = _required(request.token, "token")
    async with pool.acquire() as conn:
        await db.revoke_token(conn, digest(token))


# --- who am I -------------------------------------------------------------------------------


async def whoami(pool: asyncpg.Pool, principal: Principal, meta: ResponseMeta) -> Me:
    async with pool.acquire() as conn:
        organization = await db.find_organization(conn, principal.organization_id)
        user = None
        if principal.user_id is not None:
            user = await db.find_user(conn, principal.user_id, principal.organization_id)
    if organization is None or (principal.user_id is not None and user is None):
        raise AuthenticationError("the organization or user of these credentials is gone")
    return Me(
        user=None if user is None else MeUser(user["id"], user["email"], user["name"]),
        organization=MeOrganization(
            organization["id"], organization["name"], organization["warehouse_provider"]
        ),
        auth=principal.kind,
        meta=meta,
        role=principal.role,
        server_admin=principal.server_admin,
        scopes=list(normalize_scopes(list(principal.scopes)))
        if principal.kind == "api_key"
        else None,
    )
