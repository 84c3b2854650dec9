"""Decoding an ingestion body into events and rejections (:mod:`levered.services.ingest`'s
steps 1 and 2), and the rejection and 400 shapes both modules use.

A body is decoded in one pass when every event is valid — for exposures with ``variant`` and
``context`` kept as JSON text (:class:`levered.schemas.ingest.RawExposureEvent`) — and else
event by event with the typed decoders, so that one bad event rejects only itself (207) and
its path says where.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NoReturn, TypeVar

import msgspec

from levered.errors import EMPTY_BODY, ValidationError
from levered.schemas.ingest import (
    BATCH_DECODER,
    EXPOSURE_DECODER,
    RAW_EXPOSURE_BATCH_DECODER,
    REWARD_BATCH_DECODER,
    REWARD_DECODER,
    ExposureEvent,
    RawExposureEvent,
    Rejection,
    RewardEvent,
)

E = TypeVar("E", ExposureEvent, RewardEvent)


def parse_exposures(
    body: bytes,
) -> tuple[Sequence[tuple[int, ExposureEvent | RawExposureEvent]], list[Rejection]]:
    """Exposures with ``variant`` and ``context`` as JSON text when every event is valid and
    both are objects (the common case); else the typed events, event by event, and the
    rejections with their paths. (The typed decoders are stricter than the raw one, so when
    the raw pass fails a typed pass of the whole batch would too: none is tried.)"""
    if b"\\u0000" not in body:  # (a NUL needs the per-field check of decode_events)
        try:
            events = RAW_EXPOSURE_BATCH_DECODER.decode(body).events
        except ValueError:
            pass
        else:
            if _objects(events):
                return list(enumerate(events)), []
    return decode_events(body, decode_batch(body), EXPOSURE_DECODER)


def _objects(events: list[RawExposureEvent]) -> bool:
    """Every variant and context decodes as the typed path would decode it (a JSON object, no
    number out of a double's range, …): each distinct text checked once per batch, as texts
    repeat (a design has few variants; contexts are mostly a few combinations)."""
    checked: set[bytes] = set()
    try:
        for event in events:
            for raw in (event.variant, event.context):
                text = bytes(raw)
                if text not in checked:
                    _OBJECT.decode(text)
                    checked.add(text)
    except ValueError:
        return False
    return True


_OBJECT: Final = msgspec.json.Decoder(dict[str, Any])


def as_dict(variant: dict[str, Any] | msgspec.Raw) -> dict[str, Any]:
    """A variant as a dict: decoded from its JSON text (checked by :func:`_objects`)."""
    return variant if isinstance(variant, dict) else _OBJECT.decode(variant)


def parse_rewards(body: bytes) -> tuple[list[tuple[int, RewardEvent]], list[Rejection]]:
    """Every reward decoded in one pass when all are valid; else event by event, with paths."""
    if b"\\u0000" not in body:  # (a NUL needs the per-field check of decode_events)
        try:
            events = REWARD_BATCH_DECODER.decode(body).events
        except ValueError:
            pass  # something is wrong somewhere: the slow path below says what and where
        else:
            return list(enumerate(events)), []
    return decode_events(body, decode_batch(body), REWARD_DECODER)


def decode_batch(body: bytes) -> list[msgspec.Raw]:
    try:
        return BATCH_DECODER.decode(body).events
    except msgspec.ValidationError as exc:
        path, message = split_path(str(exc), "$")
        raise ValidationError(
            f"invalid request body at {path}: {message}",
            details=[{"path": path, "message": message}],
        ) from None
    except ValueError as exc:  # msgspec.DecodeError, or UnicodeDecodeError on invalid UTF-8
        if not body.strip():  # told apart only once decoding failed: off the hot path
            raise ValidationError(
                EMPTY_BODY, details=[{"path": "$", "message": EMPTY_BODY}]
            ) from None
        message = _decode_message(exc)
        raise ValidationError(
            f"the request body is not valid JSON: {message}",
            details=[{"path": "$", "message": message}],
        ) from None


def decode_events(
    body: bytes, raw_events: Sequence[msgspec.Raw], decoder: msgspec.json.Decoder[E]
) -> tuple[list[tuple[int, E]], list[Rejection]]:
    events: list[tuple[int, E]] = []
    rejected: list[Rejection] = []
    # PostgreSQL text and jsonb cannot hold U+0000; JSON can only spell it as an escape, so a
    # body without one needs no per-field check (the common case costs one substring search).
    maybe_nul = b"\\u0000" in body
    for index, raw in enumerate(raw_events):
        try:
            event = decoder.decode(raw)
        except msgspec.ValidationError as exc:
            path, message = split_path(str(exc), f"$.events[{index}]")
            rejected.append(Rejection(index, "invalid_event", f"{path}: {message}", path))
            continue
        except ValueError as exc:
            path = f"$.events[{index}]"
            rejected.append(
                Rejection(index, "invalid_event", f"{path}: {_decode_message(exc)}", path)
            )
            continue
        if maybe_nul and (name := _field_with_nul(event)) is not None:
            rejected.append(
                rejection(
                    index, "invalid_event", name, "the NUL character (U+0000) cannot be stored"
                )
            )
            continue
        events.append((index, event))
    if not events:
        raise_all_rejected(rejected)
    return events, rejected


def _decode_message(exc: ValueError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "invalid UTF-8"
    return str(exc)


def _field_with_nul(event: msgspec.Struct) -> str | None:
    for name in event.__struct_fields__:
        if _has_nul(getattr(event, name)):
            return name
    return None


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def rejection(index: int, code: str, field_name: str, message: str) -> Rejection:
    path = f"$.events[{index}].{field_name}"
    return Rejection(index, code, f"{path}: {message}", path)


def raise_all_rejected(rejected: list[Rejection]) -> NoReturn:
    rejected.sort(key=lambda r: r.index)
    details = [
        {
            "path": r.path,
            "index": r.index,
            "code": r.code,
            "message": r.message.removeprefix(f"{r.path}: "),
        }
        for r in rejected
    ]
    first = details[0] if details else {"path": "$", "message": "no valid event"}
    raise ValidationError(
        f"no event in the batch is valid ({len(rejected)} rejected); first: "
        f"{first['path']}: {first['message']}",
        details=details,
    )


def split_path(message: str, prefix: str) -> tuple[str, str]:
    """Turn msgspec's ``"Expected … - at `$.a[0]`"`` into (``prefix + ".a[0]"``, message)."""
    text, marker, path = message.rpartition(" - at `")
    if not marker:
        return prefix, message
    return prefix + path.rstrip("`")[1:], text
