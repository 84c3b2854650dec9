"""The ingestion API against the real app and PostgreSQL: every status, every per-event rule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from levered.db import warehouse
from levered.server.app import create_app
from levered.services.tokens import digest, new_token
from levered.settings import Settings
from tests.conftest import Org

EXPOSURES = "/api/v2/ingest/exposures"
REWARDS = "/api/v2/ingest/rewards"
DESIGN = [
    {"name": "headline", "dtype": "str", "levels": ["a", "b"]},
    {"name": "cta", "dtype": "bool", "levels": [False, True]},
]
ATTRIBUTION = {"type": "last_touch", "conversion_window_hours": 24}
INSERT_OPTIMIZATION = """
INSERT INTO optimizations (organization_id, name, status, model_type, design_factors,
                           attribution, holdout_percentage)
VALUES ($1, 'x', 'live', 'cmab', $2, $3, 10) RETURNING id
"""

Client = AsyncTestClient[Any] | httpx.AsyncClient
pytestmark = pytest.mark.anyio  # at collection time, so parametrized async tests keep params


async def make_optimization(
    conn: asyncpg.Connection, org_id: UUID, design: list[dict[str, Any]] | None = None
) -> UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        INSERT_OPTIMIZATION, org_id, design or DESIGN, ATTRIBUTION
    )


@pytest.fixture
async def live_app(settings: Settings) -> AsyncIterator[Litestar]:
    """The app with its lifespan run in *this* event loop (Litestar's test client runs it in a
    portal thread and handles one request at a time, which hides concurrency)."""
    app = create_app(settings)
    async with app.lifespan():
        yield app


@pytest.fixture
async def live(live_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """Truly concurrent requests: httpx's ASGI transport in the test's own loop."""
    transport = httpx.ASGITransport(app=live_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://levered.test") as http:
        yield http


@pytest.fixture
async def optimization(conn: asyncpg.Connection, org: Org) -> UUID:
    return await make_optimization(conn, org.id)


def exposure(opt: UUID, /, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "anonymous_id": f"user-{uuid4().hex[:8]}",
        "optimization_id": str(opt),
        "variant": {"headline": "b", "cta": True},
        "context": {"country": "US"},
        "timestamp": "2026-06-16T10:30:00Z",
        "idempotency_key": uuid4().hex,
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not ...}


def reward(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "anonymous_id": "user_123",
        "name": "signup_completed",
        "value": 2.5,
        "timestamp": "2026-06-16T10:32:00+02:00",
        "idempotency_key": uuid4().hex,
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not ...}


async def post(client: Client, url: str, org: Org, events: Any, **kwargs: Any) -> Any:
    body = msgspec.json.encode({"events": events})
    return await client.post(url, content=body, headers=org.headers, **kwargs)


async def count(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM warehouse.{table}"))


# -- 200 ----------------------------------------------------------------------------------------


async def test_exposures_are_stored_with_their_variant_number(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    events = [
        exposure(optimization, variant={"headline": "b", "cta": True}),
        exposure(
            optimization,
            variant={"headline": "a", "cta": False},
            context=...,
            timestamp=...,
            idempotency_key=...,
        ),
    ]
    before = datetime.now(UTC)
    response = await post(client, EXPOSURES, org, events)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0 and body["rejected"] == []
    assert body["meta"]["organization_id"] == str(org.id) and body["meta"]["request_id"]
    rows = await conn.fetch("SELECT * FROM warehouse.exposures ORDER BY variant_number DESC")
    assert [r["variant_number"] for r in rows] == [4, 1]  # (b, True) is the last of 2 × 2
    assert rows[0]["variant"] == {"headline": "b", "cta": True}
    assert rows[0]["context"] == {"country": "US"}
    assert rows[0]["timestamp"] == datetime(2026, 6, 16, 10, 30, tzinfo=UTC)
    assert rows[0]["organization_id"] == org.id and rows[0]["optimization_id"] == optimization
    assert rows[1]["context"] == {} and rows[1]["idempotency_key"] is None
    assert before <= rows[1]["timestamp"] <= datetime.now(UTC)  # server time when omitted


async def test_rewards_defaults_offsets_and_global_rewards(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    events = [
        reward(),
        reward(value=..., timestamp=..., properties={"plan": {"tier": 2}}),
        reward(optimization_id=str(optimization), value=-1e300),
    ]
    response = await post(client, REWARDS, org, events)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    rows = await conn.fetch("SELECT * FROM warehouse.rewards ORDER BY value")
    assert [r["value"] for r in rows] == [-1e300, 1.0, 2.5]
    assert rows[0]["optimization_id"] == optimization
    assert rows[1]["optimization_id"] is None and rows[1]["properties"] == {"plan": {"tier": 2}}
    assert rows[2]["timestamp"] == datetime(2026, 6, 16, 8, 32, tzinfo=UTC)


async def test_the_contract_curl_examples_work(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    opt = await make_optimization(
        conn,
        org.id,
        [
            {"name": "cta", "dtype": "str", "levels": ["learn_more", "sign_up_now"]},
            {"name": "hero", "dtype": "str", "levels": ["rocket", "shield"]},
        ],
    )
    body = {
        "events": [
            {
                "anonymous_id": "user_123",
                "optimization_id": str(opt),
                "variant": {"cta": "sign_up_now", "hero": "shield"},
                "context": {"country": "US", "device": "mobile"},
                "timestamp": "2026-06-16T10:30:00Z",
            }
        ]
    }
    response = await client.post(EXPOSURES, json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    body = {
        "events": [
            {
                "anonymous_id": "user_123",
                "name": "signup_completed",
                "value": 1,
                "timestamp": "2026-06-16T10:32:00Z",
            }
        ]
    }
    response = await client.post(REWARDS, json=body, headers=org.headers)
    assert response.status_code == 200, response.text


async def test_x_api_key_header_works(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    response = await client.post(
        EXPOSURES, json={"events": [exposure(optimization)]}, headers={"X-API-Key": org.api_key}
    )
    assert response.status_code == 200, response.text
    assert await count(conn, "exposures") == 1


# -- 401 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer lvk_nope1234_wrongsecret"},
        {"X-API-Key": "garbage"},
        {"Authorization": "Basic abc"},
    ],
)
async def test_bad_credentials_are_401(client: Client, headers: dict[str, str]) -> None:
    response = await client.post(REWARDS, json={"events": [reward()]}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_a_revoked_key_is_401(client: Client, conn: asyncpg.Connection, org: Org) -> None:
    await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", org.api_key_id)
    response = await post(client, REWARDS, org, [reward()])
    assert response.status_code == 401


async def test_a_user_access_token_is_refused(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    token = new_token("lvat")
    await conn.execute(
        "INSERT INTO oauth_tokens (token_hash, kind, family_id, user_id, organization_id, "
        "client_id, expires_at) VALUES ($1, 'access', $2, $3, $4, 'cli', now() + interval '1h')",
        digest(token),
        uuid4(),
        org.user_id,
        org.id,
    )
    response = await client.post(
        REWARDS, json={"events": [reward()]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert "API key" in response.json()["error"]["message"]
    assert await count(conn, "rewards") == 0


# -- 400 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        (b"not json", "$", "not valid JSON"),
        (b'{"events": [', "$", "not valid JSON"),
        (b"", "$", "the request body is empty; this endpoint takes a JSON object"),
        (b" \n", "$", "the request body is empty"),
        (b"[1, 2]", "$", "Expected `object`"),
        (b"{}", "$", "missing required field `events`"),
        (b'{"events": {}}', "$.events", "Expected `array`"),
        (b'{"events": []}', "$.events", "length >= 1"),
        (b'{"events": [{}], "extra": 1}', "$", "unknown field `extra`"),
    ],
)
async def test_malformed_bodies_are_400_with_a_path(
    client: Client, org: Org, body: bytes, path: str, fragment: str
) -> None:
    response = await client.post(EXPOSURES, content=body, headers=org.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["path"] == path
    assert fragment in error["message"] + error["details"][0]["message"]


async def test_more_than_500_events_is_400(client: Client, org: Org, optimization: UUID) -> None:
    response = await post(client, EXPOSURES, org, [exposure(optimization)] * 501)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["path"] == "$.events"
    assert "500" in response.json()["error"]["details"][0]["message"]


async def test_exactly_500_events_are_accepted(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    response = await post(client, EXPOSURES, org, [exposure(optimization) for _ in range(500)])
    assert response.status_code == 200 and response.json()["accepted"] == 500
    assert await count(conn, "exposures") == 500


async def test_every_event_invalid_is_400_listing_each(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    events = [
        exposure(optimization, anonymous_id=""),
        "junk",
        exposure(optimization, variant={"headline": "z", "cta": True}),
        exposure(optimization, timestamp="2026-06-16T10:30:00"),
    ]
    response = await post(client, EXPOSURES, org, events)
    assert response.status_code == 400, response.text
    details = response.json()["error"]["details"]
    assert [d["path"] for d in details] == [
        "$.events[0].anonymous_id",
        "$.events[1]",
        "$.events[2].variant",
        "$.events[3].timestamp",
    ]
    assert [d["index"] for d in details] == [0, 1, 2, 3]
    assert await count(conn, "exposures") == 0


# -- per-event rules (207) ----------------------------------------------------------------------

FAR_FUTURE = (datetime.now(UTC) + timedelta(hours=25)).isoformat()
NEAR_FUTURE = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
BAD_EXPOSURES: list[tuple[dict[str, Any], str, str]] = [
    ({"anonymous_id": ""}, "$.events[1].anonymous_id", "invalid_event"),
    ({"anonymous_id": "x" * 513}, "$.events[1].anonymous_id", "invalid_event"),
    ({"anonymous_id": 42}, "$.events[1].anonymous_id", "invalid_event"),
    ({"anonymous_id": ...}, "$.events[1]", "invalid_event"),
    ({"optimization_id": "not-a-uuid"}, "$.events[1].optimization_id", "invalid_event"),
    ({"optimization_id": ...}, "$.events[1]", "invalid_event"),
    ({"idempotency_key": ""}, "$.events[1].idempotency_key", "invalid_event"),
    ({"idempotency_key": "k" * 257}, "$.events[1].idempotency_key", "invalid_event"),
    ({"timestamp": "2026-06-16T10:30:00"}, "$.events[1].timestamp", "invalid_event"),
    ({"timestamp": "yesterday"}, "$.events[1].timestamp", "invalid_event"),
    ({"timestamp": 1750000000}, "$.events[1].timestamp", "invalid_event"),
    ({"timestamp": FAR_FUTURE}, "$.events[1].timestamp", "timestamp_in_future"),
    ({"timestamp": "0001-01-01T00:00:00Z"}, "$.events[1].timestamp", "timestamp_too_old"),
    ({"timestamp": "1999-12-31T23:59:59Z"}, "$.events[1].timestamp", "timestamp_too_old"),
    ({"variant": ...}, "$.events[1]", "invalid_event"),
    ({"variant": "b"}, "$.events[1].variant", "invalid_event"),
    ({"variant": {"headline": "b"}}, "$.events[1].variant", "invalid_variant"),
    ({"variant": {"headline": "c", "cta": True}}, "$.events[1].variant", "invalid_variant"),
    ({"variant": {"headline": "b", "cta": "true"}}, "$.events[1].variant", "invalid_variant"),
    ({"variant": {"headline": "b", "cta": 1}}, "$.events[1].variant", "invalid_variant"),
    (
        {"variant": {"headline": "b", "cta": True, "extra": "x"}},
        "$.events[1].variant",
        "invalid_variant",
    ),
    ({"variant": {}}, "$.events[1].variant", "invalid_variant"),
    ({"context": ["US"]}, "$.events[1].context", "invalid_event"),
    ({"context": None}, "$.events[1].context", "invalid_event"),
    ({"propensity": 0.5}, "$.events[1]", "invalid_event"),
]


@pytest.mark.parametrize(("fields", "path", "code"), BAD_EXPOSURES)
async def test_a_bad_exposure_is_rejected_and_the_rest_stored(
    client: Client,
    conn: asyncpg.Connection,
    org: Org,
    optimization: UUID,
    fields: dict[str, Any],
    path: str,
    code: str,
) -> None:
    events = [exposure(optimization), exposure(optimization, **fields), exposure(optimization)]
    response = await post(client, EXPOSURES, org, events)
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    [rejection] = body["rejected"]
    assert rejection["index"] == 1 and rejection["code"] == code
    assert rejection["path"] == path and rejection["message"].startswith(path)
    assert await count(conn, "exposures") == 2


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("context", "1e400"),
        ("context", '{"plan": 1e400}'),
        ("context", "[1, 2]"),
        ("variant", '{"headline": "b", "cta": 1e400}'),
        ("variant", '"b"'),
    ],
)
async def test_json_the_typed_decoders_refuse_is_refused_on_the_fast_path_too(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID, field: str, text: str
) -> None:
    """Variant and context are stored as the JSON text that came (service doc); text the
    typed decoders refuse — not an object, a number out of a double's range — is still a
    rejection naming the field, never stored and never a 500."""
    bad = exposure(optimization, **{field: "@BAD@"})
    body = msgspec.json.encode({"events": [exposure(optimization), bad]})
    body = body.replace(b'"@BAD@"', text.encode())
    response = await client.post(EXPOSURES, content=body, headers=org.headers)
    assert response.status_code == 207, response.text
    [rejection] = response.json()["rejected"]
    assert rejection["index"] == 1 and rejection["path"].startswith(f"$.events[1].{field}")
    assert await count(conn, "exposures") == 1


async def test_variant_and_context_are_stored_as_sent(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    """The JSON text goes to jsonb as it came: spacing and key order do not matter, numbers
    keep their value, and equal variants in other spellings get the same number."""
    body = msgspec.json.encode(
        {
            "events": [
                exposure(optimization, context="@C@", variant="@V1@"),
                exposure(optimization, variant="@V2@"),
            ]
        }
    )
    body = body.replace(b'"@C@"', b'{ "plan" : "pro", "seats": 12.50, "beta": true }')
    body = body.replace(b'"@V1@"', b'{"cta": true, "headline": "b"}')
    body = body.replace(b'"@V2@"', b'{ "headline" : "b" , "cta" : true }')
    response = await client.post(EXPOSURES, content=body, headers=org.headers)
    assert response.status_code == 200, response.text
    rows = await conn.fetch(
        "SELECT variant, variant_number, context FROM warehouse.exposures ORDER BY timestamp, "
        "context::text DESC"
    )
    assert [r["variant"] for r in rows] == [{"headline": "b", "cta": True}] * 2
    assert rows[0]["variant_number"] == rows[1]["variant_number"]
    contexts = sorted((r["context"] for r in rows), key=len)
    assert contexts[1] == {"plan": "pro", "seats": 12.5, "beta": True}


BAD_REWARDS: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "$.events[1].name"),
    ({"name": "n" * 256}, "$.events[1].name"),
    ({"name": ...}, "$.events[1]"),
    ({"value": "12"}, "$.events[1].value"),
    ({"value": None}, "$.events[1].value"),
    ({"value": True}, "$.events[1].value"),
    ({"properties": "x"}, "$.events[1].properties"),
    ({"optimization_id": 7}, "$.events[1].optimization_id"),
    ({"anonymous_id": "é" * 513}, "$.events[1].anonymous_id"),
    ({"timestamp": "2026-13-01T00:00:00Z"}, "$.events[1].timestamp"),
]


@pytest.mark.parametrize(("fields", "path"), BAD_REWARDS)
async def test_a_bad_reward_is_rejected_and_the_rest_stored(
    client: Client, conn: asyncpg.Connection, org: Org, fields: dict[str, Any], path: str
) -> None:
    response = await post(client, REWARDS, org, [reward(), reward(**fields)])
    assert response.status_code == 207, response.text
    [rejection] = response.json()["rejected"]
    assert rejection["index"] == 1 and rejection["path"] == path
    assert await count(conn, "rewards") == 1


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" + b"0" * 400])
async def test_non_finite_values_are_rejected(
    client: Client, conn: asyncpg.Connection, org: Org, number: bytes
) -> None:
    good = msgspec.json.encode(reward())
    bad = b'{"anonymous_id": "u", "name": "n", "value": ' + number + b"}"
    response = await client.post(
        REWARDS, content=b'{"events": [' + good + b", " + bad + b"]}", headers=org.headers
    )
    assert response.status_code == 207, response.text
    assert response.json()["rejected"][0]["path"] == "$.events[1].value"
    assert await count(conn, "rewards") == 1


async def test_unicode_and_nested_junk_round_trip(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    weird = "ü🙂\u2028\U0010ffff" + "x" * 508
    nested: dict[str, Any] = {"a": [1, 2.5, None, {"b": [True, "ü"]}], "deep": {}}
    cur = nested["deep"]
    for _ in range(50):
        cur["d"] = {}
        cur = cur["d"]
    response = await post(
        client, EXPOSURES, org, [exposure(optimization, anonymous_id=weird, context=nested)]
    )
    assert response.status_code == 200, response.text
    row = await conn.fetchrow("SELECT anonymous_id, context FROM warehouse.exposures")
    assert row is not None
    assert row["anonymous_id"] == weird and row["context"] == nested


async def test_a_nul_character_is_rejected_not_a_500(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    # PostgreSQL text cannot hold U+0000: that must be the event's fault, not a 503 or a 500.
    response = await post(client, REWARDS, org, [reward(), reward(anonymous_id="a\u0000b")])
    assert response.status_code == 207, response.text
    assert response.json()["rejected"][0]["path"] == "$.events[1].anonymous_id"
    response = await post(
        client,
        EXPOSURES,
        org,
        [exposure(optimization), exposure(optimization, context={"k": "\u0000"})],
    )
    assert response.status_code == 207, response.text
    assert response.json()["rejected"][0]["path"] == "$.events[1].context"


async def test_timestamp_up_to_24h_ahead_and_back_to_2000_are_accepted(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    events = [
        exposure(optimization, timestamp=NEAR_FUTURE),
        exposure(optimization, timestamp="1999-12-31T19:00:00-05:00"),  # 2000-01-01 UTC
    ]
    response = await post(client, EXPOSURES, org, events)
    assert response.status_code == 200, response.text
    assert await count(conn, "exposures") == 2


async def test_207_mixes_several_kinds_of_rejection(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    events = [
        exposure(optimization, timestamp=FAR_FUTURE),
        exposure(optimization),
        17,
        exposure(optimization, variant={"headline": "a"}),
        exposure(optimization),
    ]
    response = await post(client, EXPOSURES, org, events)
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (0, "timestamp_in_future"),
        (2, "invalid_event"),
        (3, "invalid_variant"),
    ]
    assert "missing design factor 'cta'" in body["rejected"][2]["message"]


# -- idempotency --------------------------------------------------------------------------------


async def test_a_retried_batch_stores_nothing_twice(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    events = [exposure(optimization) for _ in range(20)]
    first = await post(client, EXPOSURES, org, events)
    assert first.json()["accepted"] == 20
    again = await post(client, EXPOSURES, org, events)
    assert again.status_code == 200
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 20)
    more = events[:5] + [exposure(optimization) for _ in range(3)]
    mixed = await post(client, EXPOSURES, org, more)
    assert (mixed.json()["accepted"], mixed.json()["duplicates"]) == (3, 5)
    assert await count(conn, "exposures") == 23


async def test_after_a_resend_new_batches_are_still_stored_whole_and_copy_returns(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    """A batch with duplicates sends the organization's next batch straight to the INSERT
    (warehouse module doc); that batch, all new, is stored whole and sends the next to COPY."""
    resending = ("exposures", org.id)
    events = [exposure(optimization) for _ in range(10)]
    await post(client, EXPOSURES, org, events)
    assert resending not in warehouse._RESENDING
    again = await post(client, EXPOSURES, org, events)
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 10)
    assert resending in warehouse._RESENDING
    mixed = await post(client, EXPOSURES, org, [*events[:2], exposure(optimization)])
    assert (mixed.json()["accepted"], mixed.json()["duplicates"]) == (1, 2)
    assert resending in warehouse._RESENDING
    fresh = await post(client, EXPOSURES, org, [exposure(optimization) for _ in range(4)])
    assert (fresh.json()["accepted"], fresh.json()["duplicates"]) == (4, 0)
    assert resending not in warehouse._RESENDING
    assert await count(conn, "exposures") == 15
    # Rewards keep their own state.
    assert ("rewards", org.id) not in warehouse._RESENDING


async def test_duplicate_keys_inside_one_batch_keep_the_first(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    events = [
        reward(idempotency_key="k1", value=1),
        reward(idempotency_key="k1", value=2),
        reward(idempotency_key="k2"),
        reward(idempotency_key=...),
        reward(idempotency_key=...),
    ]
    response = await post(client, REWARDS, org, events)
    assert (response.json()["accepted"], response.json()["duplicates"]) == (4, 1)
    assert (
        await conn.fetchval("SELECT value FROM warehouse.rewards WHERE idempotency_key = 'k1'") == 1
    )
    assert await count(conn, "rewards") == 4  # events without a key are never deduplicated


async def test_keys_are_per_organization_and_event_kind(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org, optimization: UUID
) -> None:
    other_opt = await make_optimization(conn, other_org.id)
    assert (
        await post(client, EXPOSURES, org, [exposure(optimization, idempotency_key="same")])
    ).json()["accepted"] == 1
    assert (
        await post(client, EXPOSURES, other_org, [exposure(other_opt, idempotency_key="same")])
    ).json()["accepted"] == 1
    assert (await post(client, REWARDS, org, [reward(idempotency_key="same")])).json()[
        "accepted"
    ] == 1


async def test_the_same_batch_sent_concurrently_is_stored_once(
    live: httpx.AsyncClient, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    events = [exposure(optimization) for _ in range(200)]
    responses = await asyncio.gather(*(post(live, EXPOSURES, org, events) for _ in range(4)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sum(r.json()["accepted"] for r in responses) == 200
    assert sum(r.json()["duplicates"] for r in responses) == 600
    assert await count(conn, "exposures") == 200


async def test_truly_concurrent_identical_batches_wait_on_the_index(
    live: httpx.AsyncClient, conn: asyncpg.Connection, org: Org
) -> None:
    # A statement trigger that sleeps after inserting keeps the first batch's rows uncommitted
    # for a while, so the second COPY (sent at the same time) meets them in the unique index,
    # waits for the commit, conflicts, and is redone as INSERT … ON CONFLICT DO NOTHING.
    await conn.execute("""
        CREATE FUNCTION warehouse.slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (SELECT count(*) FROM inserted) > 0 THEN PERFORM pg_sleep(0.3); END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER slow AFTER INSERT ON warehouse.rewards REFERENCING NEW TABLE AS inserted
            FOR EACH STATEMENT EXECUTE FUNCTION warehouse.slow();
    """)
    try:
        events = [reward() for _ in range(10)]
        a, b = await asyncio.gather(
            post(live, REWARDS, org, events), post(live, REWARDS, org, events)
        )
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert sorted([a.json()["accepted"], b.json()["accepted"]]) == [0, 10]
        assert a.json()["duplicates"] + b.json()["duplicates"] == 10
        assert await count(conn, "rewards") == 10
    finally:
        await conn.execute("DROP FUNCTION warehouse.slow() CASCADE")


# -- 403 / 409 / 413 ----------------------------------------------------------------------------


async def test_another_orgs_optimization_is_403_and_nothing_is_stored(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org, optimization: UUID
) -> None:
    foreign = await make_optimization(conn, other_org.id)
    unknown = uuid4()
    events = [exposure(optimization), exposure(foreign), exposure(unknown)]
    response = await post(client, EXPOSURES, org, events)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert sorted(error["details"]["optimization_ids"]) == sorted([str(foreign), str(unknown)])
    assert await count(conn, "exposures") == 0

    response = await post(client, REWARDS, org, [reward(), reward(optimization_id=str(foreign))])
    assert response.status_code == 403
    assert response.json()["error"]["details"]["optimization_ids"] == [str(foreign)]
    assert await count(conn, "rewards") == 0


async def test_a_connected_warehouse_takes_exposures_not_rewards(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    """Rewards come from the connected warehouse (409 here); exposures stay in Levered's
    store and are still taken."""
    await conn.execute(
        "UPDATE organizations SET warehouse_provider = 'postgres' WHERE id = $1", org.id
    )
    response = await post(client, REWARDS, org, [reward()])
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "warehouse_not_managed"
    assert "rewards are read from it" in response.json()["error"]["message"]
    assert await count(conn, "rewards") == 0
    response = await post(client, EXPOSURES, org, [exposure(optimization)])
    assert response.status_code == 200, response.text
    assert await count(conn, "exposures") == 1


async def test_a_body_over_5_mb_is_413_in_the_envelope(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    events = [reward(properties={"pad": "x" * 11_000}) for _ in range(480)]
    response = await post(client, REWARDS, org, events)
    assert response.status_code == 413
    body = response.json()
    assert body["error"]["code"] == "payload_too_large" and body["meta"]["request_id"]
    assert await count(conn, "rewards") == 0


# -- 503 ----------------------------------------------------------------------------------------


async def test_a_failure_mid_batch_is_503_with_nothing_half_stored(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    await conn.execute("""
        CREATE FUNCTION warehouse.fail_on_tenth() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.anonymous_id = 'boom' THEN
                RAISE EXCEPTION 'disk on fire';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER fail_on_tenth BEFORE INSERT ON warehouse.exposures
            FOR EACH ROW EXECUTE FUNCTION warehouse.fail_on_tenth();
    """)
    events = [exposure(optimization) for _ in range(20)]
    events[9]["anonymous_id"] = "boom"
    response = await post(client, EXPOSURES, org, events)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "unavailable"
    assert await count(conn, "exposures") == 0

    # The same failure on the ON CONFLICT path (some keys already stored) is a 503 too.
    ok = await post(client, EXPOSURES, org, events[:3])
    assert ok.json()["accepted"] == 3
    response = await post(client, EXPOSURES, org, events)
    assert response.status_code == 503
    assert await count(conn, "exposures") == 3

    await conn.execute("DROP FUNCTION warehouse.fail_on_tenth() CASCADE")
    retry = await post(client, EXPOSURES, org, events)
    assert retry.status_code == 200
    assert (retry.json()["accepted"], retry.json()["duplicates"]) == (17, 3)
    assert await count(conn, "exposures") == 20


async def test_storage_refusing_the_rows_is_503(
    client: Client, conn: asyncpg.Connection, org: Org
) -> None:
    # The app's connections run as a superuser here, so the failure is made by a constraint
    # the rows violate instead: storage refusing the write must still be a clean 503.
    await conn.execute(
        "ALTER TABLE warehouse.rewards ADD CONSTRAINT no_more CHECK (value < 100) NOT VALID"
    )
    try:
        response = await post(client, REWARDS, org, [reward(), reward(value=1000)])
        assert response.status_code == 503
        assert "retry-after" in response.headers
        assert await count(conn, "rewards") == 0
    finally:
        await conn.execute("ALTER TABLE warehouse.rewards DROP CONSTRAINT no_more")


async def test_a_lost_database_is_503(
    live_app: Litestar, live: httpx.AsyncClient, conn: asyncpg.Connection, org: Org
) -> None:
    await live_app.state.pool.close()
    response = await post(live, REWARDS, org, [reward()])
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert await count(conn, "rewards") == 0


# -- the design cache follows changes ----------------------------------------------------------


async def test_a_changed_design_is_seen_by_the_next_batch(
    client: Client, conn: asyncpg.Connection, org: Org, optimization: UUID
) -> None:
    assert (await post(client, EXPOSURES, org, [exposure(optimization)])).status_code == 200
    new_design = [{"name": "headline", "dtype": "str", "levels": ["a", "b", "c"]}]
    await conn.execute(
        "UPDATE optimizations SET design_factors = $2 WHERE id = $1", optimization, new_design
    )
    response = await post(
        client,
        EXPOSURES,
        org,
        [exposure(optimization, variant={"headline": "c"}), exposure(optimization)],
    )
    assert response.status_code == 207
    assert response.json()["rejected"][0]["index"] == 1
    assert (
        await conn.fetchval(
            'SELECT variant_number FROM warehouse.exposures WHERE variant = \'{"headline": "c"}\''
        )
        == 3
    )
    await conn.execute("DELETE FROM optimizations WHERE id = $1", optimization)
    response = await post(client, EXPOSURES, org, [exposure(optimization)])
    assert response.status_code == 403
