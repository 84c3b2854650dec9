"""Ingestion use cases: validate a batch of exposures or rewards and store its valid events.

Order of checks for one request (each step only runs when the previous passed):

1. the envelope ``{"events": [...]}`` with 1–500 events, else 400 (``details`` by JSON path);
2. each event against its wire type (:mod:`levered.schemas.ingest`, decoded by
   :mod:`levered.services.ingest_decoding`); a bad one is *rejected*
   (207) with its path; when none is valid, 400 listing every problem (no database access).
   In the common case (every event valid) an exposure's ``variant`` and ``context`` stay JSON
   text, checked once per distinct text with the typed decoder's rules, and are stored as
   jsonb as they came;
3. one query: the organization is on the managed warehouse, else 409; every
   ``optimization_id`` named by a valid event belongs to it, else 403 listing the
   unknown-or-foreign ids (the two are not told apart) and nothing is stored;
5. per event: timestamp at most 24 h ahead (server time when omitted), an exposure's
   ``variant`` exactly one level of each design factor; more rejections, or 400 when nothing
   is left;
6. idempotency keys repeated inside the batch keep their first event (later ones count as
   duplicates); the rest is stored atomically (:mod:`levered.db.warehouse`). An exposure whose
   served twin is stored — the exposure a serve already recorded for the same user and variant,
   timed within 60 s — is not stored again and counts as a duplicate (the warehouse module's
   "Twins of served exposures"; only optimizations that have served exposures are checked).

Design cache: building a :class:`VariantSpace` means decoding ``design_factors``; the cache keeps
one per ``(optimization id, md5 of design_factors)``. Every batch still asks PostgreSQL for the
ids' owners and design hashes (one indexed query), so a changed design, a deleted optimization or
a moved one is seen by the very next batch, whichever process changed it — no invalidation
messages, and no reliance on ``updated_at`` being bumped. Only a changed design costs a second
query (for the misses).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg
import msgspec

from levered.bandit.variants import VariantSpace
from levered.db import Connection, warehouse
from levered.db.pool import stateless
from levered.errors import Conflict, PermissionDenied
from levered.schemas.ingest import Rejection
from levered.services.ingest_decoding import (
    as_dict,
    parse_exposures,
    parse_rewards,
    raise_all_rejected,
    rejection,
)

MAX_FUTURE: Final = timedelta(hours=24)
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""Event times before this are refused (``timestamp_too_old``): no product served variants in
the last millennium, so such a time is a client bug (a zero date, seconds read as days), and
one bound on each side keeps an event's time inside what the cells' hour buckets and the
training windows are made for."""

# One round trip per batch: the organization's warehouse provider, and the named optimizations
# with their owner, a hash of their design and whether they have served and ingested exposures
# (the LEFT JOIN yields one all-NULL optimization row when none of the ids exists, so the
# provider always comes back).
SELECT_BATCH_CONTEXT: Final = """
SELECT org.warehouse_provider, o.id, o.organization_id,
       md5(o.design_factors::text) AS design_hash,
       o.first_served_at IS NOT NULL AS served, o.first_ingested_at IS NOT NULL AS ingested
FROM organizations org LEFT JOIN optimizations o ON o.id = ANY($2::uuid[])
WHERE org.id = $1
"""
SELECT_DESIGNS: Final = """
SELECT id, md5(design_factors::text) AS design_hash, design_factors
FROM optimizations WHERE id = ANY($1::uuid[])
"""


@dataclass(frozen=True)
class IngestOutcome:
    accepted: int
    duplicates: int
    rejected: list[Rejection]


@dataclass
class DesignCache:
    """Variant spaces by (optimization id, design hash); least recently used evicted first."""

    capacity: int = 4096
    _spaces: OrderedDict[tuple[UUID, str], VariantSpace] = field(default_factory=OrderedDict)

    def get(self, key: tuple[UUID, str]) -> VariantSpace | None:
        space = self._spaces.get(key)
        if space is not None:
            self._spaces.move_to_end(key)
        return space

    def put(self, key: tuple[UUID, str], space: VariantSpace) -> None:
        self._spaces[key] = space
        self._spaces.move_to_end(key)
        while len(self._spaces) > self.capacity:
            self._spaces.popitem(last=False)


DESIGNS: Final = DesignCache()
_UNSEEN: Final = -1
_json: Final = msgspec.json.encode


async def ingest_exposures(
    pool: asyncpg.Pool, organization_id: UUID, body: bytes, *, now: datetime | None = None
) -> IngestOutcome:
    now = now or datetime.now(UTC)
    events, rejected = parse_exposures(body)
    # Hot loop (500 events): optimizations are keyed by ``UUID.int`` (a C-level hash; hashing a
    # UUID object is a Python call), and variant numbers are memoized per batch by the
    # variant's JSON text, which, unlike the dict, tells ``true`` from ``1``.
    by_int = {event.optimization_id.int: event.optimization_id for _, event in events}
    async with stateless(pool) as conn:
        spaces, served, unmarked = await _design_spaces(conn, organization_id, set(by_int.values()))
        # The rows carry the ids as the database returned them (asyncpg's own UUID type), which
        # its COPY encoder writes without a Python call per value, unlike the stdlib's.
        target = {space_id.int: (space_id, space) for space_id, space in spaces.items()}
        numbers: dict[tuple[int, bytes], int | None] = {}
        rows: list[warehouse.ExposureRow] = []
        keys: list[str | None] = []
        latest = now + MAX_FUTURE
        for index, event in events:
            timestamp = event.timestamp
            if timestamp is None:
                timestamp = now
            elif not EARLIEST <= timestamp <= latest:
                _reject_time(timestamp, now, index, rejected)
                continue
            optimization_id, space = target[event.optimization_id.int]
            variant = event.variant
            memo_key = (optimization_id.int, _json(variant))
            number = numbers.get(memo_key, _UNSEEN)
            if number is _UNSEEN:
                number = numbers[memo_key] = space.number(as_dict(variant))
            if number is None:
                rejected.append(
                    rejection(
                        index,
                        "invalid_variant",
                        "variant",
                        "; ".join(space.problems(as_dict(variant))),
                    )
                )
                continue
            rows.append(
                (
                    organization_id,
                    optimization_id,
                    event.anonymous_id,
                    variant,
                    number,
                    event.context,
                    timestamp,
                    event.idempotency_key,
                )
            )
            keys.append(event.idempotency_key)

        async def write(conn: Connection, rows: list[warehouse.ExposureRow]) -> int:
            return await warehouse.store_exposures(conn, rows, served=served, unmarked=unmarked)

        return await _store(conn, rows, keys, rejected, write)


async def ingest_rewards(
    pool: asyncpg.Pool, organization_id: UUID, body: bytes, *, now: datetime | None = None
) -> IngestOutcome:
    now = now or datetime.now(UTC)
    events, rejected = parse_rewards(body)
    async with stateless(pool) as conn:
        await _check_organization(
            conn,
            organization_id,
            {e.optimization_id for _, e in events if e.optimization_id},
            rewards=True,
        )
        rows: list[warehouse.RewardRow] = []
        keys: list[str | None] = []
        for index, event in events:
            timestamp = _event_time(event.timestamp, now, index, rejected)
            if timestamp is None:
                continue
            if not math.isfinite(event.value):
                rejected.append(
                    rejection(index, "invalid_event", "value", "must be a finite number")
                )
                continue
            rows.append(
                (
                    organization_id,
                    event.anonymous_id,
                    event.name,
                    event.value,
                    timestamp,
                    event.optimization_id,
                    event.properties,
                    event.idempotency_key,
                )
            )
            keys.append(event.idempotency_key)
        return await _store(conn, rows, keys, rejected, warehouse.store_rewards)


# -- steps ------------------------------------------------------------------------------------


async def _check_organization(
    conn: Connection, organization_id: UUID, ids: set[UUID], *, rewards: bool = False
) -> list[asyncpg.Record]:
    """Rewards: 409 unless on the managed warehouse (a connected warehouse's rewards are the
    ones in it; exposures stay in Levered's store either way). 403 unless every id is the
    organization's. Returns the rows (id, design_hash, served, ingested) of the named
    optimizations.
    """
    found = await conn.fetch(SELECT_BATCH_CONTEXT, organization_id, list(ids))
    provider = found[0]["warehouse_provider"] if found else None
    if rewards and provider != "managed":
        raise Conflict(
            f"this organization's warehouse is {provider!r}: rewards are read from it, so "
            "they cannot be sent here (exposures can); write them to your warehouse, or "
            "switch to the managed one with `PUT /api/v2/warehouse` (provider 'managed')",
            code="warehouse_not_managed",
        )
    owned = [r for r in found if r["id"] is not None and r["organization_id"] == organization_id]
    if missing := sorted(str(i) for i in ids - {r["id"] for r in owned}):
        raise PermissionDenied(
            "unknown optimization_id(s), or not your organization's; nothing was stored: "
            + ", ".join(missing),
            details={"optimization_ids": missing},
        )
    return owned


async def _design_spaces(
    conn: Connection, organization_id: UUID, ids: set[UUID]
) -> tuple[dict[UUID, VariantSpace], frozenset[UUID], frozenset[UUID]]:
    """The variant space of each id, the ids with served exposures and the ids without
    ingested ones (both for the twin rule of :func:`warehouse.store_exposures`)."""
    spaces: dict[UUID, VariantSpace] = {}
    misses: list[UUID] = []
    owned = await _check_organization(conn, organization_id, ids)
    served = frozenset(record["id"] for record in owned if record["served"])
    unmarked = frozenset(record["id"] for record in owned if not record["ingested"])
    for record in owned:
        space = DESIGNS.get((record["id"], record["design_hash"]))
        if space is None:
            misses.append(record["id"])
        else:
            spaces[record["id"]] = space
    if misses:
        for record in await conn.fetch(SELECT_DESIGNS, misses):
            space = VariantSpace.of(record["design_factors"])
            DESIGNS.put((record["id"], record["design_hash"]), space)
            spaces[record["id"]] = space
    return spaces, served, unmarked


def _event_time(
    given: datetime | None, now: datetime, index: int, rejected: list[Rejection]
) -> datetime | None:
    if given is None:
        return now
    if EARLIEST <= given <= now + MAX_FUTURE:
        return given
    _reject_time(given, now, index, rejected)
    return None


def _reject_time(given: datetime, now: datetime, index: int, rejected: list[Rejection]) -> None:
    """Reject an event time outside [:data:`EARLIEST`, now + :data:`MAX_FUTURE`]."""
    if given - now > MAX_FUTURE:
        rejected.append(
            rejection(
                index,
                "timestamp_in_future",
                "timestamp",
                f"{given.isoformat()} is more than 24 h after the server "
                f"time {now.isoformat(timespec='seconds')}",
            )
        )
    else:
        rejected.append(
            rejection(
                index,
                "timestamp_too_old",
                "timestamp",
                f"{given.isoformat()} is before the earliest accepted time {EARLIEST.isoformat()}",
            )
        )


async def _store(
    conn: Connection,
    rows: list[Any],
    keys: list[str | None],
    rejected: list[Rejection],
    write: Callable[[Connection, list[Any]], Awaitable[int]],
) -> IngestOutcome:
    if not rows:
        raise_all_rejected(rejected)
    rows = _first_of_each_key(rows, keys)
    duplicates_in_batch = len(keys) - len(rows)
    stored = await write(conn, rows)
    rejected.sort(key=lambda r: r.index)
    return IngestOutcome(stored, duplicates_in_batch + len(rows) - stored, rejected)


def _first_of_each_key(rows: list[Any], keys: list[str | None]) -> list[Any]:
    given = [key for key in keys if key is not None]
    if len(set(given)) == len(given):
        return rows  # no key repeats (the common case): nothing to copy
    seen: set[str] = set()
    kept: list[Any] = []
    for row, key in zip(rows, keys, strict=True):
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        kept.append(row)
    return kept
