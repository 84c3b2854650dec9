"""Scoped API keys from the attacker's side: every route × every scope.

The route list is read from the app itself, so a new endpoint cannot escape the matrix: each
protected route is called with a key of each single scope, and a key lacking the scope the
route needs must get 403 ``forbidden`` naming that scope, before any body or id is looked at.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.services.scopes import ANY_SCOPE, SCOPES, required_scope
from tests.conftest import Org

Client = AsyncTestClient[Any]
URL = "/api/v2/api-keys"
PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def _concrete(path: str) -> str:
    return PARAM.sub(lambda m: str(uuid.uuid4()) if m.group(2) == "uuid" else "x", path)


def _routes(client: Client) -> list[tuple[str, str]]:
    out = set()
    for route in client.app.routes:
        for method in getattr(route, "methods", ()):
            if method in ("OPTIONS", "HEAD") or not route.path.startswith("/api/v2/"):
                continue
            out.add((method, route.path))
    return sorted(out)


async def _key(client: Client, org: Org, scopes: list[str]) -> str:
    response = await client.post(
        URL, json={"label": "+".join(scopes), "scopes": scopes}, headers=org.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["scopes"] == scopes
    secret: str = response.json()["secret"]
    return secret


async def _call(client: Client, method: str, path: str, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body: Any = None if method in ("GET", "DELETE") else {}
    if path.endswith("/best-variant"):  # serving decodes its body before it reads the key
        body = {"optimization_id": str(uuid.uuid4())}
    return await client.request(method, _concrete(path), json=body, headers=headers)


async def test_every_route_refuses_a_key_without_its_scope(client: Client, org: Org) -> None:
    keys = {scope: await _key(client, org, [scope]) for scope in SCOPES if scope != "admin"}
    routes = _routes(client)
    assert len(routes) > 20  # the matrix really read the app's routes
    checked = 0
    for method, path in routes:
        anonymous = await _call(client, method, path, None)
        needed = required_scope(method, _concrete(path))
        if anonymous.status_code != 401 and needed != "serve":
            continue  # public (health, OAuth endpoints) and takes no key
        for scope, key in keys.items():
            response = await _call(client, method, path, key)
            if needed == ANY_SCOPE:
                assert response.status_code == 200, (method, path, scope, response.text)
            elif scope == needed:
                assert response.status_code != 403 or "missing_scope" not in response.text, (
                    method,
                    path,
                    scope,
                    response.text,
                )
            else:
                assert response.status_code == 403, (method, path, scope, response.text)
                error = response.json()["error"]
                assert error["code"] == "forbidden"
                assert error["details"] == {"missing_scope": needed}
                assert f"'{needed}'" in error["message"]
            checked += 1
    assert checked > 60


async def test_ingest_only_key_can_ingest_and_nothing_else(client: Client, org: Org) -> None:
    key = await _key(client, org, ["ingest"])
    headers = {"X-API-Key": key}
    ok = await client.post(
        "/api/v2/ingest/rewards",
        json={
            "events": [
                {"anonymous_id": "u1", "name": "signup", "timestamp": "2026-01-01T00:00:00Z"}
            ]
        },
        headers=headers,
    )
    assert ok.status_code == 200, ok.text
    for method, path in [
        ("GET", "/api/v2/optimizations"),
        ("GET", "/api/v2/api-keys"),
        ("POST", "/api/v2/warehouse/query"),
        ("POST", URL),
    ]:
        response = await _call(client, method, path, key)
        assert response.status_code == 403, (method, path, response.text)


async def test_a_read_key_cannot_mint_a_key(client: Client, org: Org) -> None:
    key = await _key(client, org, ["read"])
    response = await client.post(
        URL,
        json={"label": "escalate", "scopes": ["admin"]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"missing_scope": "admin"}


async def test_existing_and_default_keys_are_admin(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    assert await conn.fetchval("SELECT scopes FROM api_keys WHERE id = $1", org.api_key_id) == [
        "admin"
    ]
    response = await client.post(URL, json={"label": "plain"}, headers=org.headers)
    assert response.json()["scopes"] == ["admin"]


@pytest.mark.parametrize("scopes", [[], ["write"], "admin"])
async def test_bad_scopes_are_400_naming_the_field(client: Client, org: Org, scopes: Any) -> None:
    response = await client.post(URL, json={"label": "x", "scopes": scopes}, headers=org.headers)
    assert response.status_code == 400, response.text
    assert "scopes" in response.text


async def test_another_organizations_key_ids_are_404(
    client: Client, org: Org, other_org: Org
) -> None:
    response = await client.delete(f"{URL}/{other_org.api_key_id}", headers=org.headers)
    assert response.status_code == 404
