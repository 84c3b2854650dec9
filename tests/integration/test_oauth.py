"""The CLI's login flow end to end: OAuth 2.0 authorization code + PKCE S256, loopback redirect.

The browser is emulated with the HTTP client: fetch the form, submit it with the hidden fields
it carries, and read the code from the 303's Location as the CLI's loopback listener would.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
from litestar.testing import AsyncTestClient

from tests.conftest import Org

Client = AsyncTestClient[Any]
REDIRECT_URI = "http://127.0.0.1:53682/callback"
CLIENT_ID = "levered-cli"
HTML = {"Accept": "text/html,application/xhtml+xml"}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_query(challenge: str, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-" + secrets.token_hex(4),
        **overrides,
    }
    return {name: value for name, value in params.items() if value is not None}


class FormReader(HTMLParser):
    """Collects a page's <input name value> pairs, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "input":
            named = dict(attrs)
            if named.get("name"):
                self.inputs[str(named["name"])] = named.get("value") or ""


def form_inputs(html: str) -> dict[str, str]:
    reader = FormReader()
    reader.feed(html)
    return reader.inputs


def redirect_params(location: str) -> dict[str, str]:
    parts = urlsplit(location)
    return {name: values[0] for name, values in parse_qs(parts.query).items()}


async def log_in(
    client: Client, org: Org, challenge: str, *, state: str = "xyz-state", **overrides: str
) -> str:
    """Open the form, sign in, follow the redirect's Location as far as the CLI does: the code."""
    query = authorize_query(challenge, state=state, **overrides)
    page = await client.get("/oauth/authorize", params=query, headers=HTML)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    fields = form_inputs(page.text)
    fields.update(email=org.email, password=org.password)
    response = await client.post("/oauth/authorize", data=fields, follow_redirects=False)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(query["redirect_uri"].split("?")[0] + "?")
    params = redirect_params(location)
    assert params["state"] == state
    assert params["code"].startswith("lvac_")
    return params["code"]


async def exchange(client: Client, code: str, verifier: str, /, **overrides: str | None) -> Any:
    body: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
        **overrides,
    }
    return await client.post("/oauth/token", data={k: v for k, v in body.items() if v is not None})


async def refresh(client: Client, refresh_token: str) -> Any:
    return await client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
        },
    )


async def tokens_for(client: Client, org: Org) -> dict[str, Any]:
    verifier, challenge = pkce()
    response = await exchange(client, await log_in(client, org, challenge), verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me_status(client: Client, token: str) -> int:
    return (await client.get("/api/v2/me", headers=bearer(token))).status_code


def assert_oauth_error(response: Any, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error, body
    assert body["error_description"]
    assert response.headers["cache-control"] == "no-store"


async def count_codes(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM oauth_codes"))


# --- the happy path ---------------------------------------------------------------------------


async def test_pkce_flow_end_to_end(client: Client, org: Org, conn: asyncpg.Connection) -> None:
    verifier, challenge = pkce()
    page = await client.get("/oauth/authorize", params=authorize_query(challenge), headers=HTML)
    assert page.status_code == 200
    assert 'name="email"' in page.text and 'type="password"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"

    code = await log_in(client, org, challenge, state="the-cli-state")
    stored = await conn.fetchrow("SELECT code_hash, used_at FROM oauth_codes")
    assert stored is not None and stored["used_at"] is None
    assert code.encode() not in bytes(stored["code_hash"])  # only the digest is kept

    response = await exchange(client, code, verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    tokens = response.json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == ""
    assert tokens["access_token"].startswith("lvat_")
    assert tokens["refresh_token"].startswith("lvrt_")

    me = await client.get("/api/v2/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["auth"] == "user"
    assert body["user"] == {"id": str(org.user_id), "email": org.email, "name": "Acme"}
    assert body["organization"]["id"] == str(org.id)

    rows = await conn.fetch("SELECT kind, expires_at - created_at AS life FROM oauth_tokens")
    lives = {row["kind"]: row["life"].total_seconds() for row in rows}
    assert lives == {"access": 3600, "refresh": 30 * 24 * 3600}


async def test_redirect_uri_query_is_kept_and_every_loopback_form_works(
    client: Client, org: Org
) -> None:
    for uri in ("http://[::1]:4000/cb", "http://localhost:1/", "http://127.0.0.1/cb?session=7"):
        verifier, challenge = pkce()
        query = authorize_query(challenge, redirect_uri=uri)
        page = await client.get("/oauth/authorize", params=query, headers=HTML)
        fields = {**form_inputs(page.text), "email": org.email, "password": org.password}
        response = await client.post("/oauth/authorize", data=fields, follow_redirects=False)
        assert response.status_code == 303, (uri, response.text)
        params = redirect_params(response.headers["location"])
        if "session=7" in uri:
            assert params["session"] == "7"
        token = await exchange(client, params["code"], verifier, redirect_uri=uri)
        assert token.status_code == 200, (uri, token.text)


async def test_email_is_case_insensitive_and_state_is_optional(client: Client, org: Org) -> None:
    verifier, challenge = pkce()
    query = authorize_query(challenge, state="")
    page = await client.get("/oauth/authorize", params=query, headers=HTML)
    fields = {
        **form_inputs(page.text),
        "email": f"  {org.email.upper()} ",
        "password": org.password,
    }
    response = await client.post("/oauth/authorize", data=fields, follow_redirects=False)
    assert response.status_code == 303, response.text
    params = redirect_params(response.headers["location"])
    assert "state" not in params
    assert (await exchange(client, params["code"], verifier)).status_code == 200


# --- refresh tokens -----------------------------------------------------------------------------


async def test_refresh_rotates_and_reusing_an_old_refresh_token_revokes_the_family(
    client: Client, org: Org
) -> None:
    first = await tokens_for(client, org)
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert await me_status(client, second["access_token"]) == 200

    # The rotated-out refresh token is refused, and presenting it is taken as theft…
    assert_oauth_error(await refresh(client, first["refresh_token"]), "invalid_grant")
    # …so every token of that login dies, including the pair the legitimate client holds.
    assert_oauth_error(await refresh(client, second["refresh_token"]), "invalid_grant")
    assert await me_status(client, second["access_token"]) == 401
    assert await me_status(client, first["access_token"]) == 401


async def test_another_login_is_not_affected_by_a_revoked_family(client: Client, org: Org) -> None:
    stolen = await tokens_for(client, org)
    other = await tokens_for(client, org)
    assert (await refresh(client, stolen["refresh_token"])).status_code == 200
    assert_oauth_error(await refresh(client, stolen["refresh_token"]), "invalid_grant")
    assert await me_status(client, other["access_token"]) == 200
    assert (await refresh(client, other["refresh_token"])).status_code == 200


async def test_refresh_errors(client: Client, org: Org, conn: asyncpg.Connection) -> None:
    tokens = await tokens_for(client, org)
    assert_oauth_error(await refresh(client, "lvrt_unknown"), "invalid_grant")
    # An access token is not a refresh token.
    assert_oauth_error(await refresh(client, tokens["access_token"]), "invalid_grant")
    missing = await client.post("/oauth/token", data={"grant_type": "refresh_token"})
    assert_oauth_error(missing, "invalid_request")
    other_client = await client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "someone-else",
        },
    )
    assert_oauth_error(other_client, "invalid_grant")
    # Neither of those consumed it; expiry does.
    await conn.execute(
        "UPDATE oauth_tokens SET expires_at = now() - interval '1 second' WHERE kind = 'refresh'"
    )
    assert_oauth_error(await refresh(client, tokens["refresh_token"]), "invalid_grant")


# --- authorization codes ------------------------------------------------------------------------


async def test_wrong_verifier_is_refused_and_does_not_burn_the_code(
    client: Client, org: Org
) -> None:
    verifier, challenge = pkce()
    code = await log_in(client, org, challenge)
    wrong, _ = pkce()
    assert_oauth_error(await exchange(client, code, wrong), "invalid_grant")
    # Someone who intercepted the code but lacks the verifier cannot spoil the real login.
    assert (await exchange(client, code, verifier)).status_code == 200


async def test_reused_code_is_refused_and_revokes_what_it_issued(client: Client, org: Org) -> None:
    verifier, challenge = pkce()
    code = await log_in(client, org, challenge)
    first = await exchange(client, code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    assert await me_status(client, tokens["access_token"]) == 200

    assert_oauth_error(await exchange(client, code, verifier), "invalid_grant")
    assert await me_status(client, tokens["access_token"]) == 401
    assert_oauth_error(await refresh(client, tokens["refresh_token"]), "invalid_grant")


async def test_expired_code_is_refused(client: Client, org: Org, conn: asyncpg.Connection) -> None:
    verifier, challenge = pkce()
    code = await log_in(client, org, challenge)
    lifetime = await conn.fetchval("SELECT expires_at - now() FROM oauth_codes")
    assert 55 <= lifetime.total_seconds() <= 60
    await conn.execute("UPDATE oauth_codes SET expires_at = now() - interval '1 second'")
    response = await exchange(client, code, verifier)
    assert_oauth_error(response, "invalid_grant")
    assert "expired" in response.json()["error_description"]


async def test_code_is_bound_to_client_and_redirect_uri(client: Client, org: Org) -> None:
    verifier, challenge = pkce()
    code = await log_in(client, org, challenge)
    assert_oauth_error(
        await exchange(client, code, verifier, redirect_uri="http://127.0.0.1:1/other"),
        "invalid_grant",
    )
    assert_oauth_error(
        await exchange(client, code, verifier, client_id="other-cli"), "invalid_grant"
    )
    assert_oauth_error(await exchange(client, "lvac_unknown", verifier), "invalid_grant")
    assert (await exchange(client, code, verifier)).status_code == 200


async def test_token_request_errors(client: Client, org: Org) -> None:
    verifier, _ = pkce()
    assert_oauth_error(
        await exchange(client, "c", verifier, grant_type="password"), "unsupported_grant_type"
    )
    assert_oauth_error(await exchange(client, "c", verifier, grant_type=None), "invalid_request")
    assert_oauth_error(await exchange(client, "c", verifier, code=None), "invalid_request")
    assert_oauth_error(await exchange(client, "c", verifier, code_verifier=None), "invalid_request")
    assert_oauth_error(await exchange(client, "c", "short"), "invalid_request")
    assert_oauth_error(await exchange(client, "c", verifier, client_id=None), "invalid_client", 401)
    assert_oauth_error(
        await exchange(client, "c", verifier, client_id="bad client"), "invalid_client", 401
    )
    repeated = await client.post(
        "/oauth/token",
        content="grant_type=refresh_token&refresh_token=a&refresh_token=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_error(repeated, "invalid_request")
    # Unknown parameters are ignored (RFC 6749 §3.2), not rejected.
    ignored = await client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x", "foo": "1"}
    )
    assert_oauth_error(ignored, "invalid_grant")


# --- access tokens ------------------------------------------------------------------------------


async def test_expired_access_token_is_refused_and_refresh_recovers(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    tokens = await tokens_for(client, org)
    await conn.execute(
        "UPDATE oauth_tokens SET expires_at = now() - interval '1 second' WHERE kind = 'access'"
    )
    response = await client.get("/api/v2/me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    renewed = await refresh(client, tokens["refresh_token"])
    assert renewed.status_code == 200
    assert await me_status(client, renewed.json()["access_token"]) == 200


async def test_revoking_an_access_token_refuses_it_at_once(client: Client, org: Org) -> None:
    tokens = await tokens_for(client, org)
    response = await client.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"], "token_type_hint": "access_token"},
    )
    assert response.status_code == 200
    assert await me_status(client, tokens["access_token"]) == 401
    # Only the access token: the login itself can still be refreshed.
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200


async def test_revoking_a_refresh_token_ends_the_whole_login(client: Client, org: Org) -> None:
    tokens = await tokens_for(client, org)
    response = await client.post("/oauth/revoke", data={"token": tokens["refresh_token"]})
    assert response.status_code == 200
    assert await me_status(client, tokens["access_token"]) == 401
    assert_oauth_error(await refresh(client, tokens["refresh_token"]), "invalid_grant")


async def test_revoke_is_200_for_unknown_tokens_and_400_when_malformed(
    client: Client, org: Org
) -> None:
    for token in ("lvat_unknown", "garbage", org.api_key):
        response = await client.post("/oauth/revoke", data={"token": token})
        assert response.status_code == 200, response.text
    # An API key is not an OAuth token: revoke leaves it alone.
    assert (await client.get("/api/v2/me", headers=org.headers)).status_code == 200
    assert_oauth_error(await client.post("/oauth/revoke", data={}), "invalid_request")


# --- the authorization endpoint refuses -----------------------------------------------------------


BAD_REDIRECTS = (
    "https://127.0.0.1:8000/callback",
    "http://evil.example/callback",
    "http://127.0.0.1.evil.example/",
    "http://localhost.evil.example:80/",
    "http://127.0.0.1:8080@evil.example/",
    "http://evil.example\\@127.0.0.1/",
    "http://user@127.0.0.1:8080/",
    "http://127.0.0.1:99999/",
    "http://127.0.0.1:8000/cb#fragment",
    "http://[::2]:8000/",
    "levered://callback",
    "/callback",
    "",
)


async def test_non_loopback_redirect_uri_is_refused_without_redirecting(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    _, challenge = pkce()
    for uri in BAD_REDIRECTS:
        query = authorize_query(challenge, redirect_uri=uri)
        page = await client.get(
            "/oauth/authorize", params=query, headers=HTML, follow_redirects=False
        )
        assert page.status_code == 400, (uri, page.text)
        assert "location" not in page.headers
        assert page.headers["content-type"].startswith("text/html")
        assert "does not work" in page.text

        as_json = await client.get("/oauth/authorize", params=query, follow_redirects=False)
        assert as_json.status_code == 400
        assert as_json.json()["error"]["code"] == "invalid_request"

        signed_in = await client.post(
            "/oauth/authorize",
            data={**query, "email": org.email, "password": org.password},
            follow_redirects=False,
        )
        assert signed_in.status_code == 400, (uri, signed_in.text)
        assert "location" not in signed_in.headers
    assert await count_codes(conn) == 0


async def test_missing_or_malformed_client_id_is_refused_without_redirecting(
    client: Client,
) -> None:
    _, challenge = pkce()
    for client_id in (None, "", "has space", "x" * 101):
        query = authorize_query(challenge, client_id=client_id)
        page = await client.get("/oauth/authorize", params=query, follow_redirects=False)
        assert page.status_code == 400, (client_id, page.text)
        assert "location" not in page.headers


async def test_plain_and_missing_pkce_method_are_refused_by_redirect(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    _, challenge = pkce()
    for method in ("plain", None, "s256"):
        query = authorize_query(challenge, code_challenge_method=method, state="keep-me")
        for response in (
            await client.get("/oauth/authorize", params=query, follow_redirects=False),
            await client.post(
                "/oauth/authorize",
                data={**query, "email": org.email, "password": org.password},
                follow_redirects=False,
            ),
        ):
            assert response.status_code == 303, (method, response.text)
            location = response.headers["location"]
            assert location.startswith(REDIRECT_URI + "?")
            params = redirect_params(location)
            assert params["error"] == "invalid_request"
            assert "S256" in params["error_description"]
            assert params["state"] == "keep-me"
            assert "code" not in params
    assert await count_codes(conn) == 0


async def test_other_bad_authorization_requests_are_reported_to_the_client(
    client: Client,
) -> None:
    _, challenge = pkce()
    cases = [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"code_challenge": challenge[:42] + "+"}, "invalid_request"),
        ({"code_challenge": challenge + "A"}, "invalid_request"),
    ]
    for overrides, error in cases:
        query = authorize_query(challenge, **overrides)
        response = await client.get("/oauth/authorize", params=query, follow_redirects=False)
        assert response.status_code == 303, (overrides, response.text)
        assert redirect_params(response.headers["location"])["error"] == error


async def test_wrong_password_shows_the_form_again(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    _, challenge = pkce()
    query = authorize_query(challenge)
    page = await client.get("/oauth/authorize", params=query, headers=HTML)
    fields = form_inputs(page.text)
    attempts = [
        {"email": org.email, "password": org.password + "x"},
        {"email": org.email, "password": other_org.password},
        {"email": "nobody@example.test", "password": org.password},
        {"email": org.email, "password": ""},
        {"email": "", "password": org.password},
    ]
    for attempt in attempts:
        response = await client.post(
            "/oauth/authorize", data={**fields, **attempt}, follow_redirects=False
        )
        assert response.status_code == 401, (attempt, response.text)
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
        assert 'role="alert"' in response.text
        again = form_inputs(response.text)
        assert again["email"] == attempt["email"].strip()
        assert again["password"] == ""  # never echoed
        assert again["code_challenge"] == challenge and again["state"] == query["state"]
    assert await count_codes(conn) == 0


async def test_form_escapes_what_it_echoes(client: Client) -> None:
    _, challenge = pkce()
    state = '"><script>alert(1)</script>'
    page = await client.get(
        "/oauth/authorize",
        params=authorize_query(challenge, state=state, redirect_uri="http://127.0.0.1:1/?a=<b>"),
        headers=HTML,
    )
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert form_inputs(page.text)["state"] == state


async def test_a_user_token_is_scoped_to_its_organization(
    client: Client, org: Org, other_org: Org
) -> None:
    tokens = await tokens_for(client, other_org)
    me = (await client.get("/api/v2/me", headers=bearer(tokens["access_token"]))).json()
    assert me["organization"]["id"] == str(other_org.id)
    assert me["user"]["email"] == other_org.email
    keys = await client.get("/api/v2/api-keys", headers=bearer(tokens["access_token"]))
    assert keys.status_code == 200
    assert [key["id"] for key in keys.json()["api_keys"]] == [str(other_org.api_key_id)]
    revoke = await client.delete(
        f"/api/v2/api-keys/{org.api_key_id}", headers=bearer(tokens["access_token"])
    )
    assert revoke.status_code == 404


async def test_openapi_documents_the_oauth_endpoints(client: Client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert {
        "/oauth/authorize",
        "/oauth/token",
        "/oauth/revoke",
        "/api/v2/me",
        "/api/v2/api-keys",
        "/api/v2/api-keys/{key_id}",
    } <= set(paths)
    token_body = paths["/oauth/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in token_body
