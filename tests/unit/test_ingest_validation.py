"""Decoding and per-event validation of ingestion batches, without a database."""

from __future__ import annotations

import random
import string
from typing import Any
from uuid import uuid4

import msgspec
import pytest

from levered.errors import ValidationError
from levered.schemas.ingest import EXPOSURE_DECODER, REWARD_DECODER, RewardEvent
from levered.services.ingest import _first_of_each_key
from levered.services.ingest_decoding import decode_batch, decode_events, split_path


def body(events: list[Any]) -> bytes:
    return msgspec.json.encode({"events": events})


def reward(**fields: Any) -> dict[str, Any]:
    return {"anonymous_id": "u", "name": "signup", **fields}


def test_split_path_rebases_msgspec_paths() -> None:
    assert split_path("Expected `str` - at `$.variant.a`", "$.events[2]") == (
        "$.events[2].variant.a",
        "Expected `str`",
    )
    assert split_path("Object missing required field `name`", "$.events[0]") == (
        "$.events[0]",
        "Object missing required field `name`",
    )


def test_the_envelope_keeps_events_raw() -> None:
    raw = decode_batch(body([reward(), "junk", 3]))
    assert len(raw) == 3 and bytes(raw[1]) == b'"junk"'


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (b"\xff\xfe", "$"),
        (b'{"events": "x"}', "$.events"),
        (b'{"events": []}', "$.events"),
        (b'{"ev\xffents": []}', "$"),
        (body([{}] * 501), "$.events"),
    ],
)
def test_a_bad_envelope_is_one_400(data: bytes, path: str) -> None:
    with pytest.raises(ValidationError) as raised:
        decode_batch(data)
    assert raised.value.details[0]["path"] == path


def test_one_bad_event_rejects_only_itself() -> None:
    data = body([reward(), reward(value="x"), reward(name=""), reward(extra=1)])
    events, rejected = decode_events(data, decode_batch(data), REWARD_DECODER)
    assert [i for i, _ in events] == [0]
    assert [(r.index, r.path) for r in rejected] == [
        (1, "$.events[1].value"),
        (2, "$.events[2].name"),
        (3, "$.events[3]"),
    ]
    assert all(r.message.startswith(r.path + ": ") for r in rejected)


def test_invalid_utf8_inside_an_event_is_a_rejection() -> None:
    data = b'{"events": [{"anonymous_id": "u", "name": "n"}, {"anonymous_id": "\xed\xa0\x80"}]}'
    events, rejected = decode_events(data, decode_batch(data), REWARD_DECODER)
    assert len(events) == 1 and rejected[0].path == "$.events[1]"
    assert "UTF-8" in rejected[0].message


def test_nul_characters_are_rejected_by_field() -> None:
    data = body([reward(), reward(properties={"a": ["ok", {"b": "x\u0000"}]}), reward(name="\0")])
    events, rejected = decode_events(data, decode_batch(data), REWARD_DECODER)
    assert [i for i, _ in events] == [0]
    assert [r.path for r in rejected] == ["$.events[1].properties", "$.events[2].name"]


def test_every_event_invalid_is_a_400_listing_each() -> None:
    data = body([1, reward(anonymous_id="x" * 513)])
    with pytest.raises(ValidationError) as raised:
        decode_events(data, decode_batch(data), REWARD_DECODER)
    assert [d["path"] for d in raised.value.details] == ["$.events[0]", "$.events[1].anonymous_id"]


def test_naive_timestamps_are_refused_and_offsets_kept() -> None:
    with pytest.raises(msgspec.ValidationError, match="timezone"):
        REWARD_DECODER.decode(msgspec.json.encode(reward(timestamp="2026-06-16T10:00:00")))
    event = REWARD_DECODER.decode(
        msgspec.json.encode(reward(timestamp="2026-06-16T10:00:00+02:00"))
    )
    assert event.timestamp is not None and event.timestamp.utcoffset() is not None
    assert event.value == 1.0 and event.properties == {} and event.optimization_id is None


def test_exposure_defaults() -> None:
    event = EXPOSURE_DECODER.decode(
        msgspec.json.encode(
            {"anonymous_id": "u", "optimization_id": str(uuid4()), "variant": {"a": "b"}}
        )
    )
    assert event.context == {} and event.timestamp is None and event.idempotency_key is None


def test_repeated_keys_keep_the_first_row() -> None:
    rows = ["r0", "r1", "r2", "r3", "r4"]
    assert _first_of_each_key(rows, ["a", "b", None, None, "c"]) is rows
    assert _first_of_each_key(rows, ["a", "b", "a", None, None]) == ["r0", "r1", "r3", "r4"]


def test_random_junk_never_escapes_as_anything_but_a_rejection() -> None:
    """A small home-made fuzz: random JSON values in every field either decode or reject."""
    rng = random.Random(7)

    def junk(depth: int = 0) -> Any:
        kind = rng.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([True, False])
        if kind == 2:
            return rng.randint(-(10**30), 10**30)
        if kind == 3:
            return rng.uniform(-1e308, 1e308)
        if kind == 4:
            return "".join(
                rng.choice(string.printable + "éü🙂\u2028") for _ in range(rng.randrange(20))
            )
        if kind == 5:
            return ""
        if kind == 6:
            return [junk(depth + 1) for _ in range(rng.randrange(4))]
        return {str(junk(depth + 1)): junk(depth + 1) for _ in range(rng.randrange(4))}

    fields = list(RewardEvent.__struct_fields__)
    events = []
    for _ in range(400):
        event = reward()
        for name in rng.sample(fields, rng.randrange(1, 4)):
            event[name] = junk()
        events.append(event)
    data = body(events)
    decoded, rejected = decode_events(data, decode_batch(data), REWARD_DECODER)
    assert len(decoded) + len(rejected) == len(events)
    assert len({r.index for r in rejected}) == len(rejected)
    for _, event in decoded:
        assert 1 <= len(event.anonymous_id) <= 512 and 1 <= len(event.name) <= 255
