"""API keys over HTTP: create (secret once), list, revoke, and what a revoked key can do."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from tests.conftest import Org

Client = AsyncTestClient[Any]
URL = "/api/v2/api-keys"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def create(client: Client, org: Org, label: str = "ci") -> dict[str, Any]:
    response = await client.post(URL, json={"label": label}, headers=org.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_returns_secret_once_and_stores_only_its_hash(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    body = await create(client, org, "checkout service")
    assert set(body) == {
        "id",
        "label",
        "prefix",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
        "secret",
        "meta",
    }
    assert body["label"] == "checkout service"
    assert body["secret"].startswith(body["prefix"] + "_")
    assert body["prefix"].startswith("lvk_")
    assert body["last_used_at"] is None and body["revoked_at"] is None
    assert body["meta"]["organization_id"] == str(org.id)
    assert body["meta"]["request_id"]
    stored = await conn.fetchrow(
        "SELECT organization_id, secret_hash FROM api_keys WHERE id = $1", body["id"]
    )
    assert stored is not None
    assert stored["organization_id"] == org.id
    assert body["secret"].encode() not in bytes(stored["secret_hash"])


async def test_new_key_authenticates_and_records_last_use(client: Client, org: Org) -> None:
    created = await create(client, org)
    response = await client.get(URL, headers=bearer(created["secret"]))
    assert response.status_code == 200
    listed = {key["id"]: key for key in response.json()["api_keys"]}
    assert listed[created["id"]]["last_used_at"] is not None


async def test_list_is_newest_first_and_never_shows_secrets(client: Client, org: Org) -> None:
    first = await create(client, org, "first")
    second = await create(client, org, "second")
    response = await client.get(URL, headers=org.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["meta"]["organization_id"] == str(org.id)
    ids = [key["id"] for key in body["api_keys"]]
    assert ids[:2] == [second["id"], first["id"]]
    assert str(org.api_key_id) in ids  # the fixture's key, created before both
    for key in body["api_keys"]:
        assert "secret" not in key and "secret_hash" not in key
    assert first["secret"] not in response.text and second["secret"] not in response.text


async def test_revoked_key_is_refused_at_once(client: Client, org: Org) -> None:
    created = await create(client, org)
    assert (await client.get(URL, headers=bearer(created["secret"]))).status_code == 200

    response = await client.delete(f"{URL}/{created['id']}", headers=org.headers)
    assert response.status_code == 200
    revoked = response.json()
    assert revoked["id"] == created["id"] and revoked["revoked_at"] is not None
    assert "secret" not in revoked
    assert revoked["meta"]["organization_id"] == str(org.id)

    refused = await client.get(URL, headers=bearer(created["secret"]))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"


async def test_revoking_twice_is_idempotent(client: Client, org: Org) -> None:
    created = await create(client, org)
    once = await client.delete(f"{URL}/{created['id']}", headers=org.headers)
    twice = await client.delete(f"{URL}/{created['id']}", headers=org.headers)
    assert once.status_code == twice.status_code == 200
    assert once.json()["revoked_at"] == twice.json()["revoked_at"]


async def test_a_key_can_revoke_itself(client: Client, org: Org) -> None:
    response = await client.delete(f"{URL}/{org.api_key_id}", headers=org.headers)
    assert response.status_code == 200
    assert (await client.get(URL, headers=org.headers)).status_code == 401


async def test_revoking_unknown_key_is_404(client: Client, org: Org) -> None:
    response = await client.delete(
        f"{URL}/00000000-0000-4000-8000-000000000000", headers=org.headers
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert (await client.delete(f"{URL}/not-a-uuid", headers=org.headers)).status_code == 404


async def test_listing_never_shows_another_organizations_keys(
    client: Client, org: Org, other_org: Org
) -> None:
    theirs = await create(client, other_org, "globex secret service")
    response = await client.get(URL, headers=org.headers)
    ids = {key["id"] for key in response.json()["api_keys"]}
    assert ids == {str(org.api_key_id)}
    assert theirs["id"] not in ids and str(other_org.api_key_id) not in ids
    assert "globex" not in response.text.lower()


async def test_revoking_another_organizations_key_is_404_and_it_keeps_working(
    client: Client, org: Org, other_org: Org
) -> None:
    response = await client.delete(f"{URL}/{other_org.api_key_id}", headers=org.headers)
    assert response.status_code == 404
    assert (await client.get(URL, headers=other_org.headers)).status_code == 200


async def test_credentials_are_required(client: Client, org: Org) -> None:
    created = await create(client, org)
    secret = created["secret"]
    prefix = created["prefix"]
    cases: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer("garbage"),
        bearer("lvk_"),
        bearer(secret[:-1] + ("a" if secret[-1] != "a" else "b")),  # right prefix, wrong secret
        bearer(f"{prefix}_"),
        bearer("lvk_zzzzzzzz_" + "x" * 40),  # well formed, unknown prefix
    ]
    for headers in cases:
        for response in (
            await client.get(URL, headers=headers),
            await client.post(URL, json={"label": "x"}, headers=headers),
            await client.delete(f"{URL}/{created['id']}", headers=headers),
        ):
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
    assert (await client.get(URL, headers=bearer(secret))).json()["api_keys"][0][
        "revoked_at"
    ] is None


async def test_create_validates_the_label(client: Client, org: Org) -> None:
    for body in (
        {},
        {"label": ""},
        {"label": "x" * 201},
        {"label": 3},
        {"label": "ok", "extra": 1},
    ):
        response = await client.post(URL, json=body, headers=org.headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    assert (
        await client.post(URL, json={"label": "x" * 200}, headers=org.headers)
    ).status_code == 201
