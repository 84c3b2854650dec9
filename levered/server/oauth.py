"""OAuth 2.0 for the CLI: ``/oauth/authorize`` (a login page), ``/oauth/token``, ``/oauth/revoke``.

Error formats differ from the rest of the API, on purpose:

* ``/oauth/token`` and ``/oauth/revoke`` answer errors in RFC 6749 §5.2's format,
  ``{"error": "invalid_grant", "error_description": "…"}``, status 400 (401 for
  ``invalid_client``), because OAuth client libraries parse exactly that. This is the one place
  where the OAuth RFCs win over the product's error envelope; successful token responses carry
  no ``meta`` for the same reason.
* ``/oauth/authorize`` is a page for a browser. A request whose client or redirect URI is
  unusable gets a 400 page (the error envelope when the caller does not accept HTML) and is
  never redirected; other request errors go back to the loopback redirect URI as
  ``?error=…&state=…`` (RFC 6749 §4.1.2.1); a wrong password shows the form again, status 401.

The use cases live in :mod:`levered.services.oauth`; this module only decodes and renders.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any, Final

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.exceptions import ValidationException
from litestar.params import FromQuery, QueryParameter, URLEncodedBody
from litestar.response import Redirect

from levered.schemas.oauth import (
    AuthorizeParams,
    LoginForm,
    OAuthErrorBody,
    RevokeRequest,
    TokenRequest,
    TokenResponse,
)
from levered.server.envelope import handle_domain_error
from levered.services import oauth
from levered.services.oauth import (
    AuthorizeErrorRedirect,
    AuthorizeRequest,
    InvalidAuthorizeRequest,
    LoginFailed,
    OAuthError,
)

NO_STORE: Final = {"cache-control": "no-store", "pragma": "no-cache"}
PAGE_HEADERS: Final = {
    **NO_STORE,
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}

PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Levered</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f5f5f7; color: #1d1d1f; margin: 0; }}
main {{ max-width: 22rem; margin: 4rem auto; background: #fff; padding: 2rem;
        border-radius: .75rem; box-shadow: 0 1px 4px rgba(0, 0, 0, .1); }}
h1 {{ font-size: 1.3rem; margin-top: 0; }}
label {{ display: block; margin: 1rem 0 .25rem; font-weight: 600; }}
input {{ width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; }}
button {{ margin-top: 1.5rem; width: 100%; padding: .6rem; font-size: 1rem; }}
.error {{ color: #b00020; }}
.note {{ color: #6e6e73; font-size: .85rem; }}
</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""

LOGIN_FORM: Final = """<h1>Sign in to Levered</h1>
<p><code>{client_id}</code> asks to act on your behalf.</p>
{error}<form method="post" action="authorize">
<label for="email">Email</label>
<input id="email" name="email" type="email" value="{email}" autocomplete="username"
       required{focus_email}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
       required{focus_password}>
<label for="organization">Organization <span class="note">(optional: id or name)</span></label>
<input id="organization" name="organization" value="{organization}" type="text">
{hidden}<button type="submit">Sign in</button>
</form>
<p class="note">You will then be sent back to <code>{redirect_uri}</code>.</p>
"""

ERROR_PAGE: Final = """<h1>This sign-in link does not work</h1>
<p class="error" role="alert">{message}</p>
<p>Start again from the command line with <code>levered login</code>.</p>
"""


def _page(title: str, body: str, status: int) -> Response[str]:
    return Response(
        PAGE.format(title=escape(title), body=body),
        status_code=status,
        media_type=MediaType.HTML,
        headers=PAGE_HEADERS,
    )


def render_login(
    authorize: AuthorizeRequest, *, email: str = "", error: str | None = None, status: int = 200
) -> Response[str]:
    """The login form; every interpolated value is HTML-escaped."""
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">\n'
        for name, value in authorize.hidden_fields().items()
    )
    body = LOGIN_FORM.format(
        client_id=escape(authorize.client_id),
        redirect_uri=escape(authorize.redirect_uri),
        email=escape(email),
        organization=escape(authorize.organization or ""),
        error="" if error is None else f'<p class="error" role="alert">{escape(error)}</p>\n',
        focus_email="" if email else " autofocus",
        focus_password=" autofocus" if email else "",
        hidden=hidden,
    )
    return _page("Sign in", body, status)


def on_invalid_authorize(request: Request[Any, Any, Any], exc: InvalidAuthorizeRequest) -> Any:
    if "text/html" in request.headers.get("accept", ""):
        return _page("Invalid sign-in link", ERROR_PAGE.format(message=escape(exc.message)), 400)
    return handle_domain_error(request, exc)


def on_malformed_authorize(request: Request[Any, Any, Any], exc: ValidationException) -> Any:
    """A parameter given twice (RFC 6749 §3.1 forbids it) or an undecodable form."""
    return on_invalid_authorize(
        request, InvalidAuthorizeRequest("the request is malformed (a parameter given twice?)")
    )


def on_authorize_error_redirect(
    request: Request[Any, Any, Any], exc: AuthorizeErrorRedirect
) -> Redirect:
    return Redirect(exc.location, status_code=303, headers=NO_STORE)


def on_login_failed(request: Request[Any, Any, Any], exc: LoginFailed) -> Response[str]:
    return render_login(exc.request, email=exc.email, error=exc.message, status=401)


def on_oauth_error(request: Request[Any, Any, Any], exc: OAuthError) -> Response[OAuthErrorBody]:
    return Response(
        OAuthErrorBody(exc.code, exc.message),
        status_code=exc.status,
        media_type=MediaType.JSON,
        headers=NO_STORE,
    )


def on_malformed_token_request(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[OAuthErrorBody]:
    return on_oauth_error(
        request,
        OAuthError(
            "invalid_request", "the request is malformed (a parameter given twice, or not a form)"
        ),
    )


class AuthorizeController(Controller):
    """The authorization endpoint (RFC 6749 §3.1): a login page the CLI opens in a browser."""

    path = "/oauth/authorize"
    tags = ("oauth",)
    exception_handlers = {  # noqa: RUF012 - Litestar's layered attribute, never mutated
        InvalidAuthorizeRequest: on_invalid_authorize,
        ValidationException: on_malformed_authorize,
        AuthorizeErrorRedirect: on_authorize_error_redirect,
        LoginFailed: on_login_failed,
    }

    @get(
        media_type=MediaType.HTML,
        summary="The login form of the authorization-code flow (PKCE S256, loopback redirect).",
    )
    async def form(
        self,
        response_type: FromQuery[str | None] = None,
        client_id: FromQuery[str | None] = None,
        redirect_uri: FromQuery[str | None] = None,
        code_challenge: FromQuery[str | None] = None,
        code_challenge_method: FromQuery[str | None] = None,
        oauth_state: Annotated[str | None, QueryParameter(name="state")] = None,
        organization: FromQuery[str | None] = None,
    ) -> Response[str]:
        params = AuthorizeParams(
            response_type,
            client_id,
            redirect_uri,
            code_challenge,
            code_challenge_method,
            oauth_state,
            organization,
        )
        return render_login(oauth.check_authorize(params))

    @post(
        status_code=303,
        summary="Check the credentials; on success redirect to redirect_uri with code and state.",
    )
    async def sign_in(
        self, request: Request[Any, Any, Any], data: URLEncodedBody[LoginForm]
    ) -> Redirect:
        location = await oauth.login(request.app.state.pool, data)
        return Redirect(location, status_code=303, headers=NO_STORE)


class TokenController(Controller):
    """The token (RFC 6749 §3.2) and revocation (RFC 7009) endpoints; form-encoded bodies."""

    path = "/oauth"
    tags = ("oauth",)
    cache_control = CacheControlHeader(no_store=True)
    response_headers = (ResponseHeader(name="pragma", value="no-cache"),)
    exception_handlers = {  # noqa: RUF012 - Litestar's layered attribute, never mutated
        OAuthError: on_oauth_error,
        ValidationException: on_malformed_token_request,
    }

    @post(
        "/token",
        status_code=200,
        summary="Exchange an authorization code (with its PKCE verifier) or a refresh token.",
    )
    async def token(
        self, request: Request[Any, Any, Any], data: URLEncodedBody[TokenRequest]
    ) -> TokenResponse:
        return await oauth.exchange_token(request.app.state.pool, data)

    @post(
        "/revoke",
        status_code=200,
        summary="Revoke an access token, or a refresh token and its whole login. Always 200.",
    )
    async def revoke(
        self, request: Request[Any, Any, Any], data: URLEncodedBody[RevokeRequest]
    ) -> None:
        await oauth.revoke_token(request.app.state.pool, data)
