"""Sticky claims of caller-supplied anonymous ids, many per statement.

A new user whose id the caller chose may be served by any process at the same moment, so its
first decision is *claimed* in the database (insert, or read the one another process stored):
an atomic statement per user, which made "new caller id" serves cost a round trip and a
statement each (≈ 1,500–2,200 serves/s on the 2-core machines, against ≈ 10,000 for a returning
user). Claims that arrive together now share one statement (``CLAIM_ASSIGNMENTS``: ``unnest``
of the batch, the same ``ON CONFLICT`` rule per row), with at most :data:`FLUSHERS` statements in
flight: while one runs, the next batch collects. Nothing is deferred — a serve still answers
only after its claim is committed — and the semantics are those of one claim per user:

- repeats of one key in a batch are claimed once and share the answer (the first one's decision
  is stored; that is what sequential claims would have given the later ones);
- a key another process committed after the statement's snapshot comes back in neither branch
  and is claimed on its own (``claim_assignment``, which retries);
- a statement refused for one row's data (an integrity error: say its optimization was just
  deleted) is redone claim by claim, so only that row's serve fails; any other failure (the
  database unreachable) fails every claim of the batch with the database's error (the serve
  answers 503 and the client retries). Nothing is half-stored: one statement, one transaction.

Each claim must be settled within :data:`~levered.db.pool.DB_WAIT_S` of its arrival, or its
serve answers 503 (the database is hung or overloaded). The batcher keeps that deadline itself:
a batch runs under the earliest deadline of its claims, and one whose time is up fails them all
with the 503. So a claim costs no timer of its own and no shielding task — about a fifth of the
worker's CPU per new caller id when every request armed both. A claim whose serve was cancelled
(the client went away) still completes for the batch it is in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Final, NamedTuple
from uuid import UUID

import asyncpg

from levered.db import serving as db
from levered.db.pool import DB_WAIT_S, deadline_exceeded, stateless

MAX_BATCH: Final = 1_000
FLUSHERS: Final = 4


class _Claim(NamedTuple):
    row: db.AssignmentRow
    live_since: datetime | None
    """The optimization's: a stored assignment made before it is stale (NULL = none is)."""
    answer: asyncio.Future[db.Assignment]
    deadline: float
    """Loop time by which the claim must be settled (its arrival + ``DB_WAIT_S``)."""


class ClaimBatcher:
    """Claims of :data:`~levered.db.serving.AssignmentRow` rows, batched (module docstring)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool
        self._waiting: list[_Claim] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def claim(self, row: db.AssignmentRow, live_since: datetime | None) -> db.Assignment:
        """The assignment that holds for ``row``'s key: ``row`` itself when it was stored, else
        the valid one stored before (made at or after ``live_since``; NULL = any)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[db.Assignment] = loop.create_future()
        self._waiting.append(_Claim(row, live_since, future, loop.time() + DB_WAIT_S))
        if len(self._flushers) < FLUSHERS:
            task = asyncio.create_task(self._flush(), name="levered-claims")
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def close(self) -> None:
        for task in list(self._flushers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for claim in self._waiting:
            if not claim.answer.done():
                claim.answer.set_exception(ConnectionError("the server is shutting down"))
        self._waiting.clear()

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                try:
                    async with asyncio.timeout_at(min(claim.deadline for claim in batch)):
                        await self._claim_batch(batch)
                except TimeoutError:
                    raise deadline_exceeded("claiming the sticky assignment") from None
            except BaseException as exc:
                for claim in batch:
                    if not claim.answer.done():
                        claim.answer.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled: close() fails whatever is still waiting

    async def _claim_batch(self, batch: list[_Claim]) -> None:
        first: dict[tuple[UUID, str], tuple[db.AssignmentRow, datetime | None]] = {}
        for claim in batch:
            first.setdefault((claim.row[0], claim.row[1]), (claim.row, claim.live_since))
        results: dict[tuple[UUID, str], db.Assignment | Exception] = {}
        # One statement per claim, transaction-scoped locks only: no session state to reset.
        async with stateless(self._pool()) as conn:
            rows = [row for row, _ in first.values()]
            # Refused for one row's data (its optimization is gone, say): each alone, below.
            with contextlib.suppress(asyncpg.IntegrityConstraintViolationError):
                results.update(
                    await db.claim_assignments(conn, rows, [s for _, s in first.values()])
                )
            for key, (row, live_since) in first.items():
                if key in results:
                    continue
                try:  # committed elsewhere after the snapshot, or the batch was refused
                    results[key] = await db.claim_assignment(conn, row, live_since)
                except asyncpg.IntegrityConstraintViolationError as exc:
                    results[key] = exc
        for claim in batch:
            if not claim.answer.done():
                result = results[(claim.row[0], claim.row[1])]
                if isinstance(result, Exception):
                    claim.answer.set_exception(result)
                else:
                    claim.answer.set_result(result)
