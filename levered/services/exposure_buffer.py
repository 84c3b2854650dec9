"""Serve-time writes, buffered in process and written with COPY off the request path.

A serve appends its exposure (and, for a server-generated anonymous id, its sticky assignment)
to a list — no I/O, no await — and returns. One background task per process writes what has
accumulated with one ``COPY`` per table every ``interval`` seconds (50 ms), or as soon as
``max_events`` (500) are waiting, and once more when the process shuts down cleanly.

Durability promise (docs/serving.md): a serve's exposure is acknowledged *before* it is durable.
A clean shutdown (SIGINT/SIGTERM, lifespan exit) writes everything; a crash of the process loses
at most what arrived since the last flush (≈ one interval). While the database is unreachable,
rows go to a disk spool (:mod:`levered.services.exposure_spool`) and are written from there once
it answers — through a crash or restart in between, exactly once; only where the spool cannot be
written (no spool, disk full) are they kept in memory, up to ``max_pending`` (the oldest are
dropped beyond that, counted in ``stats.dropped``). A crash of the process itself while the
database is up still loses at most the last interval; the ingestion API stays the exactly-once
path for events that must not be lost (idempotency keys), with ``dry_run`` serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Final

import asyncpg

from levered.db import Connection
from levered.db import serving as db
from levered.db.spooled_exposures import store_spooled
from levered.services.exposure_spool import ExposureSpool

log = logging.getLogger("levered.serving")

FLUSH_INTERVAL_S: Final = 0.05
FLUSH_EVENTS: Final = 500
MAX_PENDING: Final = 200_000
CLOSE_ATTEMPTS: Final = 5
_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass
class BufferStats:
    written: int = 0
    dropped: int = 0
    failed_flushes: int = 0
    assignments_written: int = 0
    assignments_dropped: int = 0
    spooled: int = 0
    replayed: int = 0


class ExposureBuffer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        interval: float = FLUSH_INTERVAL_S,
        max_events: int = FLUSH_EVENTS,
        max_pending: int = MAX_PENDING,
        spool: ExposureSpool | None = None,
    ) -> None:
        self._pool = pool
        self.spool = spool
        self._spool_waiting = False
        self.interval = interval
        self.max_events = max_events
        self.max_pending = max_pending
        self._exposures: list[db.ExposureRow] = []
        self._assignments: list[db.AssignmentRow] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.stats = BufferStats()

    @property
    def pending(self) -> int:
        return len(self._exposures)

    def add(self, row: db.ExposureRow) -> None:
        self._exposures.append(row)
        if len(self._exposures) >= self.max_events:
            self._wake.set()

    def add_assignment(self, row: db.AssignmentRow) -> None:
        self._assignments.append(row)

    def start(self) -> None:
        if self.spool is not None:
            adopted = self.spool.adopt_orphans()
            if adopted:
                log.warning("%d spool files of stopped processes will be written", adopted)
            self._spool_waiting = bool(self.spool.pending())
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="levered-exposure-buffer")

    async def close(self) -> None:
        """Stop the background task and write everything still buffered."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for attempt in range(CLOSE_ATTEMPTS):
            if await self.flush() or not (self._exposures or self._assignments):
                break
            await asyncio.sleep(0.1 * 2**attempt)
        if self._exposures and not self._to_spool(self._exposures):
            log.error("shutdown: %d served exposures could not be written", len(self._exposures))
            self.stats.dropped += len(self._exposures)
        self._exposures = []

    async def flush(self) -> bool:
        """Write what is buffered now; False when the database refused (rows are kept)."""
        async with self._lock:
            exposures, self._exposures = self._exposures, []
            assignments, self._assignments = self._assignments, []
            if not exposures and not assignments:
                return await self._replay_spool()
            try:
                async with self._pool.acquire() as conn:
                    if assignments:
                        await self._write_assignments(conn, assignments)
                    if exposures:
                        await db.copy_exposures(conn, exposures)
            except _FAILURES as exc:
                self.stats.failed_flushes += 1
                if not self._to_spool(exposures):
                    self._requeue(exposures)
                    log.warning(
                        "exposure flush failed (%s); %d rows kept", exc, len(self._exposures)
                    )
                return False
            self.stats.written += len(exposures)
            return await self._replay_spool()

    def _to_spool(self, rows: list[db.ExposureRow]) -> bool:
        """Move ``rows`` to the disk spool; False (rows untouched) when that is impossible."""
        if self.spool is None or not rows:
            return False
        try:
            path = self.spool.write(rows)
        except OSError as exc:
            log.error("cannot spool %d served exposures to disk: %s", len(rows), exc)
            return False
        self.stats.spooled += len(rows)
        self._spool_waiting = True
        log.warning("database unavailable: %d served exposures spooled to %s", len(rows), path)
        return True

    async def _replay_spool(self) -> bool:
        """Write the spool files, oldest first; False at the first that fails (kept)."""
        if not self._spool_waiting or self.spool is None:
            return True
        for path in self.spool.pending():
            try:
                rows = self.spool.read(path)
            except (OSError, ValueError) as exc:  # msgspec's DecodeError is a ValueError
                log.error("unreadable spool file %s set aside: %s", path, exc)
                with contextlib.suppress(OSError):
                    path.rename(path.with_name(path.name + ".unreadable"))
                continue
            try:
                async with self._pool.acquire() as conn:
                    new = await store_spooled(conn, rows)
            except _FAILURES as exc:
                log.warning("spooled exposures not written yet (%s)", exc)
                return False
            path.unlink(missing_ok=True)
            self.stats.replayed += new
            self.stats.written += new
            log.warning("wrote %d spooled exposures from %s", new, path.name)
        self._spool_waiting = False
        return True

    async def _write_assignments(
        self, conn: Connection, assignments: list[db.AssignmentRow]
    ) -> None:
        # Assignments of server-generated ids only spare a round trip: losing them costs
        # stickiness for ids nobody has sent back yet, so a refused batch is dropped, not retried
        # (a row the database refuses would fail every retry).
        try:
            await db.copy_assignments(conn, assignments)
            self.stats.assignments_written += len(assignments)
        except asyncpg.PostgresError as exc:
            self.stats.assignments_dropped += len(assignments)
            log.warning("dropped %d generated-id assignments: %s", len(assignments), exc)

    def _requeue(self, rows: list[db.ExposureRow]) -> None:
        merged = rows + self._exposures
        overflow = len(merged) - self.max_pending
        if overflow > 0:
            self.stats.dropped += overflow
            merged = merged[overflow:]
        self._exposures = merged

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                ok = await self.flush()
            except Exception:  # never let the writer die: serving would buffer forever
                log.exception("exposure flush crashed")
                ok = False
            if not ok:
                await asyncio.sleep(min(1.0, self.interval * 10))
