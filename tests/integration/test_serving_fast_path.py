"""The serve routes' fast path (levered.server.serving.FastServe) answers exactly as the
documented Litestar handlers do: same body, same errors and envelope, same fallbacks."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from levered.server.serving import FastServe
from tests.conftest import Org
from tests.integration.test_serving import API, Client, create, settings  # noqa: F401

pytestmark = pytest.mark.anyio

VOLATILE = {"meta"}


def stable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in VOLATILE}


async def test_the_fast_path_is_installed_and_matches_the_litestar_handler(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    assert isinstance(client.app.asgi_handler, FastServe)
    opt = await create(client, conn, org)
    # Sticky: the second answer (from the other path) is the first decision, stored.
    body = {"anonymous_id": "same-user", "context": {"country": "DE"}}
    fast = await client.post(f"{API}/{opt}/serve", json=body)
    # 32 hex digits: not the canonical form, so Litestar's handler answers (and parses the id).
    slow = await client.post(f"{API}/{UUID(opt).hex}/serve", json=body)
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"]
    assert stable(fast.json()) == stable(slow.json())
    assert fast.json().keys() == slow.json().keys()
    assert fast.json()["meta"].keys() == slow.json()["meta"].keys()
    assert fast.json()["meta"]["organization_id"] == str(org.id)
    best = await client.post(f"{API}/best-variant", json={**body, "optimization_id": opt})
    assert stable(best.json()) == stable(fast.json())


async def test_fast_path_errors_use_the_envelope_with_the_request_id(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    missing = uuid4()
    response = await client.post(
        f"{API}/{missing}/serve", json={}, headers={"X-Request-ID": "trace-42"}
    )
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "trace-42"
    assert response.json() == {
        "error": {"code": "not_found", "message": f"optimization {missing} not found"},
        "meta": {"request_id": "trace-42"},
    }
    insane = await client.post(f"{API}/{missing}/serve", json={}, headers={"X-Request-ID": "a b"})
    rid = insane.json()["meta"]["request_id"]
    assert rid != "a b" and insane.headers["x-request-id"] == rid
    opt = await create(client, conn, org)
    # A wrong context type is the service's 400, worded the same on both paths.
    bad = {"context": {"mobile": "yes"}}
    fast = await client.post(f"{API}/{opt}/serve", json=bad)
    slow = await client.post(f"{API}/{UUID(opt).hex}/serve", json=bad)
    assert fast.status_code == slow.status_code == 400
    assert fast.json()["error"] == slow.json()["error"]
    # Bodies that do not decode strictly are replayed to Litestar: its 400, with a request id.
    for raw in (b"{", b'{"surprise": 1}', b'{"anonymous_id": ""}', b"[]"):
        response = await client.post(
            f"{API}/{opt}/serve", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, raw
        assert response.json()["error"]["code"] == "validation_error"
        assert response.headers["x-request-id"] == response.json()["meta"]["request_id"]
    response = await client.post(f"{API}/best-variant", content=b"")
    assert response.status_code == 400
    # Routes the fast path does not own are untouched.
    assert (await client.post(f"{API}/{opt}/serve/extra", json={})).status_code in (404, 405)
    assert (await client.get(f"{API}/{opt}/serve")).status_code == 405
