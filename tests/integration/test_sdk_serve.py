"""The serving SDK against a real server process, a dead port, a silent socket and scripted
transports: decisions, stickiness, the fallback that never raises, the time budget, retries
and the TTL cache."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import anyio
import asyncpg
import httpx
import pytest

from levered.client.serve import AsyncServeClient, ServeClient, aserve, serve
from levered.db.embedded_host import free_port
from tests.conftest import Org
from tests.integration.test_serving import SPACE, definition, insert_metric

FALLBACK = {"headline": "Ship faster", "cta": "Get started"}
OPT = "2a5c8c1e-0b1f-4f55-9f43-36f0c0a9c111"


async def create(server_url: str, conn: asyncpg.Connection, org: Org, **overrides: Any) -> str:
    metric = await insert_metric(conn, org)
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{server_url}/api/v2/optimizations",
            json=definition(metric, **overrides),
            headers=org.headers,
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_sync_and_async_serve_against_a_real_server(
    server_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(server_url, conn, org)
    with ServeClient(server_url, timeout=5) as client:
        first = await anyio.to_thread.run_sync(
            lambda: client.serve(opt, "sdk-user", {"country": "DE"}, fallback=FALLBACK)
        )
    assert not first.fallback and first.error is None
    assert first.variant == SPACE.variant(first.variant_number or 0)
    assert first.optimization_id == opt
    again = await aserve(server_url, opt, "sdk-user", fallback=FALLBACK, timeout=5)
    assert (again.variant_number, again.decision_id) == (first.variant_number, first.decision_id)
    one_shot = await anyio.to_thread.run_sync(
        lambda: serve(server_url, opt, fallback=FALLBACK, timeout=5, dry_run=True)
    )
    assert not one_shot.fallback and one_shot.anonymous_id


async def test_not_live_returns_the_fallback(
    server_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await create(server_url, conn, org, draft=True)
    served = await aserve(server_url, opt, "u", fallback=FALLBACK, timeout=5)
    assert served.fallback and served.variant == FALLBACK
    assert served.error is not None and "409" in served.error


async def test_an_unknown_context_key_is_a_fallback_that_says_why(
    server_url: str, conn: asyncpg.Connection, org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    # The page still renders (the fallback), but the 400 is not silent: served.error carries
    # the server's message naming the key, and it is logged as a warning.
    opt = await create(server_url, conn, org)
    with caplog.at_level("WARNING", logger="levered.client.serve"):
        served = await aserve(server_url, opt, "u", {"mobil": True}, fallback=FALLBACK, timeout=5)
    assert served.fallback and served.variant == FALLBACK
    assert served.error is not None and served.error.startswith("HTTP 400: ")
    assert "'mobil' is not a context factor" in served.error
    assert "country, mobile" in served.error
    assert any("'mobil'" in r.getMessage() for r in caplog.records)


def test_server_down_returns_the_fallback_without_raising() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    served = serve(dead, OPT, "u", fallback=FALLBACK, timeout=0.5, retries=3)
    assert served.fallback and served.variant == FALLBACK and served.variant_number is None
    assert "ConnectError" in (served.error or "")
    assert served.anonymous_id == "u"  # the user it was asked for, as on a real decision
    assert time.monotonic() - began < 1.5


async def test_server_down_async() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with AsyncServeClient(dead, timeout=0.5, retries=3) as client:
        served = await client.serve(OPT, "u", fallback=FALLBACK)
    assert served.fallback and served.variant == FALLBACK and served.anonymous_id == "u"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: the worst kind of unavailable."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for c in accepted:
            c.close()
        sock.close()


def test_the_timeout_is_a_budget_for_the_whole_call(silent_server: str) -> None:
    began = time.monotonic()
    served = serve(silent_server, OPT, "u", fallback=FALLBACK, timeout=0.3, retries=5)
    elapsed = time.monotonic() - began
    assert served.fallback and "Timeout" in (served.error or "")
    assert elapsed < 0.8


async def test_the_async_timeout_is_a_hard_deadline(silent_server: str) -> None:
    began = time.monotonic()
    served = await aserve(silent_server, OPT, "u", fallback=FALLBACK, timeout=0.3, retries=5)
    assert served.fallback
    assert time.monotonic() - began < 0.8


def decision(anonymous_id: str = "u") -> dict[str, Any]:
    return {
        "optimization_id": OPT,
        "anonymous_id": anonymous_id,
        "variant": {"headline": "Scale up", "cta": "Try it"},
        "variant_number": 6,
        "variant_key": "2.1",
        "holdout": False,
        "propensity": 0.25,
        "model_version": 3,
        "decision_id": str(uuid4()),
        "meta": {"request_id": "r", "organization_id": str(uuid4())},
    }


class Script:
    """A transport answering from a list of status codes (the last one repeats)."""

    def __init__(self, *statuses: int, retry_after: str | None = None) -> None:
        self.statuses = list(statuses)
        self.calls: list[dict[str, Any]] = []
        self.retry_after = retry_after

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(json.loads(request.content))
        status = self.statuses[min(len(self.calls), len(self.statuses)) - 1]
        if status == 200:
            return httpx.Response(200, json=decision(self.calls[-1].get("anonymous_id", "r")))
        headers = {"retry-after": self.retry_after} if self.retry_after else {}
        body = {"error": {"code": "x", "message": f"status {status}"}, "meta": {}}
        return httpx.Response(status, json=body, headers=headers)


def test_retries_on_5xx_and_429_then_succeeds() -> None:
    script = Script(503, 429, 200)
    client = ServeClient(
        "http://levered", timeout=2, retries=2, transport=httpx.MockTransport(script)
    )
    served = client.serve(OPT, "u", {"country": "DE"}, fallback=FALLBACK)
    assert not served.fallback and served.variant_number == 6 and served.model_version == 3
    assert len(script.calls) == 3
    assert script.calls[0] == {"anonymous_id": "u", "context": {"country": "DE"}}


def test_gives_up_after_the_retries_and_on_caller_errors() -> None:
    script = Script(503)
    client = ServeClient(
        "http://levered", timeout=2, retries=2, transport=httpx.MockTransport(script)
    )
    served = client.serve(OPT, "u", fallback=FALLBACK)
    assert served.fallback and len(script.calls) == 3 and served.error == "HTTP 503"
    for status in (400, 404, 409):
        script = Script(status)
        client = ServeClient("http://levered", transport=httpx.MockTransport(script))
        served = client.serve(OPT, "u", fallback=FALLBACK)
        assert served.fallback and len(script.calls) == 1 and served.anonymous_id == "u"
        assert served.error == f"HTTP {status}: status {status}"


def test_a_retry_after_beyond_the_budget_is_not_waited_for() -> None:
    script = Script(429, 200, retry_after="30")
    client = ServeClient("http://levered", timeout=0.5, transport=httpx.MockTransport(script))
    began = time.monotonic()
    served = client.serve(OPT, "u", fallback=FALLBACK)
    assert served.fallback and len(script.calls) == 1
    assert time.monotonic() - began < 0.3


def test_ttl_cache_reuses_a_decision_per_user_and_context() -> None:
    script = Script(200)
    client = ServeClient("http://levered", cache_ttl=0.3, transport=httpx.MockTransport(script))
    first = client.serve(OPT, "u", {"country": "DE"}, fallback=FALLBACK)
    second = client.serve(OPT, "u", {"country": "DE"}, fallback=FALLBACK)
    assert len(script.calls) == 1
    assert second.cached and second.decision_id == first.decision_id
    client.serve(OPT, "u", {"country": "FR"}, fallback=FALLBACK)  # another context
    client.serve(OPT, "v", {"country": "DE"}, fallback=FALLBACK)  # another user
    client.serve(OPT, None, fallback=FALLBACK)  # no id: never cached
    client.serve(OPT, None, fallback=FALLBACK)
    assert len(script.calls) == 5
    time.sleep(0.35)
    client.serve(OPT, "u", {"country": "DE"}, fallback=FALLBACK)
    assert len(script.calls) == 6


def test_fallbacks_are_not_cached() -> None:
    script = Script(503, 200)
    client = ServeClient(
        "http://levered", retries=0, cache_ttl=60, transport=httpx.MockTransport(script)
    )
    assert client.serve(OPT, "u", fallback=FALLBACK).fallback
    assert not client.serve(OPT, "u", fallback=FALLBACK).fallback


async def test_async_client_retries_and_caches() -> None:
    script = Script(502, 200)
    async with AsyncServeClient(
        "http://levered", cache_ttl=60, transport=httpx.MockTransport(script)
    ) as client:
        first = await client.serve(OPT, "u", fallback=FALLBACK)
        second = await client.serve(OPT, "u", fallback=FALLBACK)
    assert not first.fallback and second.cached and len(script.calls) == 2


def test_a_malformed_answer_is_a_fallback_not_an_exception() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"<html>"))
    served = ServeClient("http://levered", transport=transport).serve(OPT, "u", fallback=FALLBACK)
    assert served.fallback and served.variant == FALLBACK
