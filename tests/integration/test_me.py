"""``GET /api/v2/me``: who the presented credentials belong to, for a user and for an API key."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from levered.services.tokens import digest, new_token
from tests.conftest import Org

Client = AsyncTestClient[Any]
URL = "/api/v2/me"


async def access_token(
    conn: asyncpg.Connection, org: Org, *, expires: timedelta = timedelta(hours=1)
) -> str:
    """An access token as the login flow stores it (the flow itself is tested in test_oauth)."""
    token = new_token("lvat")
    await conn.execute(
        "INSERT INTO oauth_tokens (token_hash, kind, family_id, user_id, organization_id, "
        "client_id, expires_at) VALUES ($1, 'access', $2, $3, $4, 'levered-cli', "
        "now() + $5::interval)",
        digest(token),
        uuid.uuid4(),
        org.user_id,
        org.id,
        expires,
    )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_api_key_caller_has_no_user(client: Client, org: Org) -> None:
    response = await client.get(URL, headers=org.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["auth"] == "api_key"
    assert body["user"] is None
    assert body["organization"] == {
        "id": str(org.id),
        "name": "Acme",
        "warehouse_provider": "managed",
    }
    assert body["meta"]["organization_id"] == str(org.id)
    assert body["meta"]["request_id"]
    assert body["scopes"] == ["admin"] and body["role"] is None


async def test_a_scoped_key_sees_its_scopes(client: Client, org: Org) -> None:
    created = await client.post(
        "/api/v2/api-keys",
        json={"label": "backend", "scopes": ["serve", "ingest"]},
        headers=org.headers,
    )
    assert created.status_code == 201, created.text
    body = (await client.get(URL, headers=bearer(created.json()["secret"]))).json()
    # No 'read' needed: a back end's key may always learn what it is.
    assert body["scopes"] == ["ingest", "serve"] and body["auth"] == "api_key"


async def test_user_token_caller(client: Client, org: Org, conn: asyncpg.Connection) -> None:
    response = await client.get(URL, headers=bearer(await access_token(conn, org)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["auth"] == "user"
    assert body["user"] == {"id": str(org.user_id), "email": org.email, "name": "Acme"}
    assert body["organization"]["id"] == str(org.id)
    assert set(body) == {"user", "organization", "auth", "meta", "role", "server_admin", "scopes"}
    assert body["role"] == "admin" and body["server_admin"] is False
    assert body["scopes"] is None  # a user's role decides, not scopes


async def test_each_organization_sees_itself(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    theirs = (await client.get(URL, headers=other_org.headers)).json()
    assert theirs["organization"]["id"] == str(other_org.id)
    assert theirs["organization"]["name"] == "Globex"
    user = (await client.get(URL, headers=bearer(await access_token(conn, other_org)))).json()
    assert user["user"]["email"] == other_org.email
    assert user["organization"]["id"] == str(other_org.id)


async def test_refused_credentials(client: Client, org: Org, conn: asyncpg.Connection) -> None:
    expired = await access_token(conn, org, expires=timedelta(seconds=-1))
    revoked = await access_token(conn, org)
    await conn.execute(
        "UPDATE oauth_tokens SET revoked_at = now() WHERE token_hash = $1", digest(revoked)
    )
    await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", org.api_key_id)
    for headers in (
        {},
        bearer("garbage"),
        bearer("lvat_unknown"),
        bearer(expired),
        bearer(revoked),
        org.headers,  # revoked API key
        bearer(new_token("lvrt")),  # a refresh token is not an access token
    ):
        response = await client.get(URL, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
