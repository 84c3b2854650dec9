"""Every error the app produces uses the envelope of README "HTTP API", with no stack traces."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from levered.db.pool import connect
from levered.errors import Conflict
from levered.server.app import create_app
from levered.server.envelope import EXCEPTION_HANDLERS
from levered.settings import Settings


def assert_envelope(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error", "meta"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["meta"]["request_id"], str) and body["meta"]["request_id"]


async def test_unknown_route_is_a_404_envelope(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/api/v2/nothing-here")
    assert response.status_code == 404
    assert_envelope(response.json(), "not_found")
    assert "/api/v2/nothing-here" in response.json()["error"]["message"]
    assert response.headers["x-request-id"] == response.json()["meta"]["request_id"]


async def test_an_id_that_is_not_a_uuid_is_named(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/api/v2/optimizations/123")
    assert response.status_code == 404
    assert_envelope(response.json(), "not_found")
    assert response.json()["error"]["message"] == (
        "'123' is not an id (ids are UUIDs) in GET /api/v2/optimizations/123"
    )
    deeper = await client.post("/api/v2/models/abc/train")
    assert deeper.json()["error"]["message"].startswith("'abc' is not an id (ids are UUIDs)")
    nothing = await client.get(f"/api/v2/optimizations/{uuid.uuid4()}/nothing")
    assert nothing.json()["error"]["message"].startswith("no route for GET ")


async def test_wrong_method_is_a_405_envelope(client: AsyncTestClient[Any]) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert_envelope(response.json(), "method_not_allowed")


async def test_caller_request_id_is_echoed(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/nope", headers={"X-Request-ID": "trace-123"})
    assert response.json()["meta"]["request_id"] == "trace-123"
    hostile = await client.get("/nope", headers={"X-Request-ID": "<script>" * 20})
    assert hostile.json()["meta"]["request_id"] != "<script>" * 20


class Body(msgspec.Struct, forbid_unknown_fields=True):
    count: int
    name: str


@post("/echo")
async def echo(data: JSONBody[Body]) -> Body:
    return data


@get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internal detail /etc/passwd")


@get("/conflict")
async def conflict() -> None:
    raise Conflict("already shipped", details={"allowed": ["live"]})


@pytest.fixture
async def probe() -> Any:
    app = Litestar([echo, boom, conflict], exception_handlers=EXCEPTION_HANDLERS, debug=False)
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def test_validation_errors_name_the_field(probe: AsyncTestClient[Any]) -> None:
    response = await probe.post("/echo", json={"count": "three", "name": "x"})
    assert response.status_code == 400
    body = response.json()
    assert_envelope(body, "validation_error")
    assert "count" in body["error"]["message"]
    assert any("count" in d["path"] for d in body["error"]["details"])


async def test_malformed_json_is_a_400_envelope(probe: AsyncTestClient[Any]) -> None:
    response = await probe.post(
        "/echo", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_envelope(response.json(), "validation_error")


async def test_an_empty_body_is_named_as_such(probe: AsyncTestClient[Any]) -> None:
    for headers in ({"content-type": "application/json"}, {}):
        response = await probe.post("/echo", content=b"", headers=headers)
        assert response.status_code == 400
        body = response.json()
        assert_envelope(body, "validation_error")
        assert body["error"]["message"] == (
            "the request body is empty; this endpoint takes a JSON object"
        )
        assert body["error"]["details"][0]["path"] == "$"


async def test_unknown_fields_are_refused(probe: AsyncTestClient[Any]) -> None:
    response = await probe.post("/echo", json={"count": 1, "name": "x", "extra": True})
    assert response.status_code == 400
    assert "extra" in response.text


async def test_unexpected_exception_is_a_500_without_internals(probe: AsyncTestClient[Any]) -> None:
    response = await probe.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert_envelope(body, "internal_error")
    assert "passwd" not in response.text and "Traceback" not in response.text
    assert body["meta"]["request_id"] in body["error"]["message"]


async def test_domain_errors_keep_code_and_details(probe: AsyncTestClient[Any]) -> None:
    response = await probe.get("/conflict")
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"allowed": ["live"]}


async def test_ready_is_503_when_migrations_are_not_current(postgres_url: str) -> None:
    name = f"unmigrated_{uuid.uuid4().hex[:8]}"
    admin = await connect(postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
        async with AsyncTestClient(create_app(Settings(database_url=url))) as fresh:
            response = await fresh.get("/ready")
            assert response.status_code == 503
            assert_envelope(response.json(), "unavailable")
            assert "levered db migrate" in response.json()["error"]["message"]
            assert response.headers["retry-after"]
            assert (await fresh.get("/health")).status_code == 200
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_ready_and_openapi(client: AsyncTestClient[Any]) -> None:
    assert (await client.get("/ready")).json()["status"] == "ready"
    schema = (await client.get("/schema/openapi.json")).json()
    assert schema["info"]["title"] == "Levered API" and "/health" in schema["paths"]
