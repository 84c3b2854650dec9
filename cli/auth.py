"""``levered login | logout | whoami``: the OAuth 2.0 PKCE loopback flow (RFC 8252, RFC 7636).

``login`` listens on a random 127.0.0.1 port, sends the browser to the server's
``/oauth/authorize`` with an S256 challenge, receives the code on the loopback redirect, and
exchanges it with the verifier. ``--with-token`` reads an API key or access token from stdin
instead, for scripts and machines without a browser.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
import threading
import urllib.parse
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Annotated, Any

from cyclopts import Parameter

from cli.console import EXIT_AUTH, fail, notice
from cli.flags import ApiUrlFlag, JsonFlag
from cli.output import emit_json, emit_table
from cli.session import CLIENT_ID, api_url, call, token_from_response
from cli.store import StoredToken, load_tokens, save_token
from levered.client.api import LeveredAPI

LOGIN_TIMEOUT_S = 300.0

# How the authorize URL reaches a person; tests replace it with a scripted browser.
open_browser: Callable[[str], object] = webbrowser.open


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


class _Callback(BaseHTTPRequestHandler):
    result: dict[str, str]
    done: threading.Event

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        type(self).result.update({k: v[0] for k, v in query.items()})
        ok = "code" in query
        self.send_response(200 if ok else 400)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.end_headers()
        message = (
            "Levered: you are logged in. You can close this window."
            if ok
            else "Levered: login failed. Return to the terminal."
        )
        self.wfile.write(f"<!doctype html><title>Levered</title><p>{message}</p>".encode())
        type(self).done.set()

    def log_message(self, *args: Any) -> None:
        return


def login(
    *,
    api_url_flag: ApiUrlFlag = None,
    no_browser: Annotated[
        bool,
        Parameter(name="--no-browser", negative="", help="Print the URL instead of opening it."),
    ] = False,
    with_token: Annotated[
        bool,
        Parameter(name="--with-token", negative="", help="Read an API key or token from stdin."),
    ] = False,
    organization: Annotated[
        str | None,
        Parameter(help="Organization (id or name) to act for; default your first one."),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Authenticate via browser OAuth. Optionally override the API URL for this session."""
    url = api_url(api_url_flag)
    if with_token:
        secret = sys.stdin.readline().strip()
        if not secret:
            fail("--with-token: nothing on stdin", EXIT_AUTH)
        me = _me_with(url, secret)
        stored = (
            StoredToken(api_key=secret)
            if secret.startswith("lvk_")
            else StoredToken(access_token=secret, expires_at=None)
        )
        save_token(url, stored)
        _report(me, url, json)
        return
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    handler: type[_Callback] = type(
        "Callback", (_Callback,), {"result": {}, "done": threading.Event()}
    )
    server = HTTPServer(("127.0.0.1", 0), handler)
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        authorize = f"{url}/oauth/authorize?" + urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": redirect_uri,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": state,
            }
            | ({"organization": organization} if organization else {})
        )
        notice(f"Open this URL to log in:\n  {authorize}")
        if not no_browser:
            open_browser(authorize)
        if not handler.done.wait(LOGIN_TIMEOUT_S):
            fail("no login within 5 minutes; run `levered login` again", EXIT_AUTH)
    finally:
        server.shutdown()
        server.server_close()
    result = handler.result
    if result.get("state") != state:
        fail("login refused: the state parameter did not match (possible CSRF)", EXIT_AUTH)
    if "code" not in result:
        fail(f"login failed: {result.get('error_description') or result.get('error')}", EXIT_AUTH)

    async def exchange(api: LeveredAPI) -> dict[str, Any]:
        return await api.request(
            "POST",
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": result["code"],
                "redirect_uri": redirect_uri,
                "client_id": CLIENT_ID,
                "code_verifier": verifier,
            },
        )

    tokens = call(exchange, url_flag=url, authenticated=False)
    save_token(url, token_from_response(tokens))
    _report(_me_with(url, tokens["access_token"]), url, json)


def _me_with(url: str, token: str) -> dict[str, Any]:
    async def fetch(_: LeveredAPI) -> dict[str, Any]:
        from cli.session import transport_factory

        async with LeveredAPI(url, token, transport=transport_factory()) as api:
            return await api.get("/api/v2/me")

    return call(fetch, url_flag=url, authenticated=False)


def _report(me: dict[str, Any], url: str, json: bool) -> None:
    if json:
        emit_json(me)
        return
    who = (me.get("user") or {}).get("email") or "API key"
    notice(f"Logged in to {url} as {who} ({me['organization']['name']}).")


def logout(*, api_url_flag: ApiUrlFlag = None) -> None:
    """Clear stored session tokens for the current environment (and revoke them)."""
    url = api_url(api_url_flag)
    stored = load_tokens().get(url)
    if stored is None:
        notice(f"not logged in to {url}")
        return
    token = stored.refresh_token or stored.access_token
    if token:
        try:
            call(
                lambda api: api.request(
                    "POST", "/oauth/revoke", data={"token": token, "client_id": CLIENT_ID}
                ),
                url_flag=url,
                authenticated=False,
            )
        except Exception as exc:  # forgetting locally must work even when the server is gone
            notice(f"warning: could not revoke the session on the server ({exc})")
    save_token(url, None)
    notice(f"logged out of {url}")


def whoami(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """Print the currently authenticated user and organization."""
    me = call(lambda api: api.get("/api/v2/me"), url_flag=api_url_flag)
    if json:
        emit_json(me)
        return
    user = me.get("user") or {}
    org = me["organization"]
    emit_table(
        ["field", "value"],
        [
            ["user", user.get("email", "-")],
            ["auth", me.get("auth")],
            # A key has scopes, a user a role: show the one that applies.
            ["scopes", ", ".join(me["scopes"])]
            if me.get("scopes") is not None
            else ["role", me.get("role") or "-"],
            ["organization", org["name"]],
            ["organization_id", org["id"]],
            ["warehouse", org.get("warehouse_provider")],
            ["api_url", api_url(api_url_flag)],
        ],
    )
