"""What the OpenAPI document says, checked against the code that enforces it (the contract
test, test_openapi_contract.py, checks it against the running server)."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from levered.schemas.ingest import (
    EXPOSURE_BATCH_DECODER,
    MAX_EVENTS,
    REWARD_BATCH_DECODER,
    ExposureBatch,
    RewardBatch,
)
from levered.server.observations import MAX_PAGE
from levered.server.openapi import LOOPBACK_REDIRECT, ingestion_components
from levered.services.oauth import is_loopback_redirect
from tests.conftest import Org

Client = AsyncTestClient[Any]


async def _document(client: Client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def test_every_error_is_documented_with_the_envelope(client: Client) -> None:
    document = await _document(client)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "500" in responses, (method, path)
            for status, response in responses.items():
                if int(status) < 400 or path.startswith("/oauth/"):
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path)
    envelope = document["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["error", "meta"]


async def test_credentials_are_documented(client: Client) -> None:
    document = await _document(client)
    paths = document["paths"]
    assert paths["/api/v2/optimizations"]["get"]["security"] == [{"bearer": []}, {"oauth2": []}]
    assert {"apiKey": []} in paths["/api/v2/ingest/rewards"]["post"]["security"]
    assert "security" not in paths["/health"]["get"]
    assert "401" in paths["/api/v2/me"]["get"]["responses"]
    assert "401" not in paths["/health"]["get"]["responses"]
    flow = document["components"]["securitySchemes"]["oauth2"]["flows"]["authorizationCode"]
    assert flow["tokenUrl"] == "/oauth/token"


async def test_ingestion_documents_the_decoders_types(client: Client) -> None:
    document = await _document(client)
    operation = document["paths"]["/api/v2/ingest/exposures"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ExposureBatch"}
    assert {"200", "207", "400", "403", "409", "413", "503"} <= set(operation["responses"])
    assert "201" not in operation["responses"]
    schemas = document["components"]["schemas"]
    assert EXPOSURE_BATCH_DECODER.type is ExposureBatch
    assert REWARD_BATCH_DECODER.type is RewardBatch
    _, plain = msgspec.json.schema_components([ExposureBatch, RewardBatch])
    for name in ("ExposureEvent", "RewardEvent"):
        documented = schemas[name]
        assert documented["required"] == plain[name]["required"]
        assert set(documented["properties"]) == set(plain[name]["properties"])
        assert documented["additionalProperties"] is False
    batch = schemas["RewardBatch"]["properties"]["events"]
    assert (batch["minItems"], batch["maxItems"]) == (1, MAX_EVENTS)


def test_documented_ingestion_limits_are_the_decoders() -> None:
    schemas = ingestion_components()
    event = {"anonymous_id": "u", "name": "signup"}
    REWARD_BATCH_DECODER.decode(msgspec.json.encode({"events": [event] * MAX_EVENTS}))
    too_many = msgspec.json.encode({"events": [event] * (MAX_EVENTS + 1)})
    for body in (too_many, b'{"events": []}'):
        try:
            REWARD_BATCH_DECODER.decode(body)
        except msgspec.ValidationError:
            pass
        else:
            raise AssertionError("the decoder accepted a batch the document refuses")
    for field, prop in schemas["RewardEvent"]["properties"].items():
        option = prop.get("anyOf", [prop])[0]
        if "maxLength" not in option:
            continue
        longest = {**event, field: "x" * option["maxLength"]}
        REWARD_BATCH_DECODER.decode(msgspec.json.encode({"events": [longest]}))
        longer = {**event, field: "x" * (option["maxLength"] + 1)}
        try:
            REWARD_BATCH_DECODER.decode(msgspec.json.encode({"events": [longer]}))
        except msgspec.ValidationError:
            continue
        raise AssertionError(f"RewardEvent.{field}: longer than documented was accepted")
    value = schemas["RewardEvent"]["properties"]["value"]
    assert value["maximum"] == 1.7976931348623157e308  # inf is rejected per event


@settings(max_examples=300, deadline=None)
@given(st.from_regex(LOOPBACK_REDIRECT, fullmatch=True).filter(lambda uri: len(uri) <= 2000))
def test_every_documented_redirect_uri_is_accepted(uri: str) -> None:
    assert is_loopback_redirect(uri), uri


async def test_options_lists_every_method_of_the_path(client: Client) -> None:
    """Litestar 2 answered with the methods of a path's first-registered handler only."""
    for route in client.app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = re.sub(r"\{\w+:uuid\}", str(uuid4()), route.path)
        path = re.sub(r"\{\w+:str\}", "events", path)
        response = await client.options(path)
        assert response.status_code == 204, path
        assert response.headers["allow"] == ", ".join(sorted(route.methods)), path


async def test_a_page_past_the_last_is_a_400_naming_it(client: Client, org: Org) -> None:
    path = f"/api/v2/optimizations/{uuid4()}/observations"
    for page in (MAX_PAGE + 1, 733281194173972699914472259584):
        response = await client.get(path, params={"page": page}, headers=org.headers)
        assert response.status_code == 400, response.text
        body = response.json()["error"]
        assert body["code"] == "validation_error"
        assert body["details"][0]["path"] == "$.page"
        assert body["message"].startswith("invalid query parameter page: ")
    response = await client.get(path, params={"page": MAX_PAGE}, headers=org.headers)
    assert response.status_code == 404  # valid page, unknown optimization
