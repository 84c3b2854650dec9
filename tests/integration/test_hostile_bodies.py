"""Hostile request bodies get a 4xx in the error envelope, never a 500 or a plain-text body.

JSON nested far deeper than any real payload (≈ 10 KB of brackets) made msgspec raise
``RecursionError`` while decoding, which escaped as a 500.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import Org

DEPTH = 5_000
NESTED = b"[" * DEPTH + b"]" * DEPTH


def _bodies() -> list[tuple[str, bytes]]:
    wrapped = b'{"events": ' + NESTED + b"}"
    return [("top level", NESTED), ("inside a field", wrapped)]


ROUTES = [
    "/api/v2/ingest/exposures",
    "/api/v2/ingest/rewards",
    "/api/v2/optimizations",
    "/api/v2/warehouse/query",
    "/api/v2/metrics",
    f"/api/v2/optimizations/{uuid4()}/serve",
    "/api/v2/optimizations/best-variant",
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("where", "body"), _bodies(), ids=["top", "field"])
async def test_deeply_nested_json_is_a_400_with_the_envelope(
    client: AsyncTestClient[Any], org: Org, route: str, where: str, body: bytes
) -> None:
    headers = {**org.headers, "Content-Type": "application/json"}
    response = await client.post(route, content=body, headers=headers)
    assert 400 <= response.status_code < 500, (where, response.status_code, response.text[:200])
    error = response.json()["error"]
    assert error["code"] in {"validation_error", "not_found", "bad_request"}, error
    if where == "inside a field" and response.status_code == 400:
        assert error["message"] == "invalid request body: JSON nested too deeply to decode"
