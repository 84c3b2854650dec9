"""The training scheduler: every interval, retrain each live optimization whose cells would change.

Candidates are live optimizations with a reward metric. One is retrained when, compared with
what its current version was trained on (``counts.data_through``, ``counts.marker`` and the
as-of time of the version):

- exposures have matured since (an index range on ``(optimization_id, timestamp)``), or
- late events arrived: exposures or rewards the version's cells had not seen (received after
  the newest event they had seen less a margin, and committed after their snapshot:
  :func:`levered.db.cell_passes.unseen`), timed at or before its as-of (BRIN ranges on
  ``received_at``), or
- its metric or attribution changed (the stored cells' fingerprint differs: a rebuild), or
- it has no version yet and has matured exposures, or
- its rewards come from a connected warehouse (no arrival times Levered can read) and the
  version is older than :data:`levered.services.reward_source.RELOAD_POLL`, or
- its exposures are the customer's own table in the connected warehouse: it has no version
  yet, or exposures matured there since (one EXISTS in the customer's database,
  :func:`levered.services.reward_source.native_matured`), or the version is older than
  :data:`levered.services.reward_source.RELOAD_POLL`.

After the trainings, each live optimization with an ``auto_pause`` guardrail is judged
(:func:`levered.services.guardrails.run_scheduled`), so a violated one pauses within an interval.

Every check reads only what is new, never counts over the table. Every server process runs
one; the training lock (:mod:`levered.services.training`) makes sure two never train the same
model at once — the loser's ``training_in_progress`` is not an error here. Any failure is logged
and the loop goes on; a model whose training fails is marked ``failed`` and retried on the next
pass that still sees new data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from levered.db import Connection
from levered.db import models as db
from levered.db.attribution import OptimizationSpec, find_target
from levered.db.cell_passes import EPOCH
from levered.errors import Conflict, Unavailable
from levered.services import guardrails, reward_source, training
from levered.services.cells import LATE_MARGIN, fingerprint
from levered.services.warehouse import Warehouse

log = logging.getLogger(__name__)


async def due(wh: Warehouse) -> list[tuple[UUID, UUID]]:
    """(organization id, optimization id) of every live optimization with new data (module doc)."""
    out: list[tuple[UUID, UUID]] = []
    async with wh.pool.acquire() as conn:
        for row in await db.scheduler_candidates(conn):
            if await _has_new_data(wh, conn, row):
                out.append((row["organization_id"], row["optimization_id"]))
    return out


async def _has_new_data(wh: Warehouse, conn: Connection, row: Any) -> bool:
    organization_id, optimization_id = row["organization_id"], row["optimization_id"]
    source = await reward_source.identity(conn, organization_id)
    native = reward_source.is_native(source)
    if native and row["version"] is None:
        return True  # its exposures are in the customer's table, not counted from here
    through = row["trained_through"] or EPOCH
    if not native and await db.new_matured(conn, optimization_id, through, row["window_seconds"]):
        return True
    if row["version"] is None or (row["trained_marker"] is None and not native):
        return False
    found = await find_target(conn, organization_id, optimization_id)
    stored_fp = row["cells_fingerprint"]
    if (
        found is not None
        and found[1] is not None
        and stored_fp is not None
        and fingerprint(found[0], found[1], source) != stored_fp
    ):
        return True
    if source != "managed":  # no arrival times to read: poll (reward_source.RELOAD_POLL)
        if row["trained_as_of"] <= datetime.now(UTC) - reward_source.RELOAD_POLL:
            return True
        return native and found is not None and await _native_matured(wh, row, found[0])
    seen_below = row["trained_seen_below"]
    # Without the snapshot's xmin (a version trained before it was recorded), only what is
    # newer than the marker counts: the margin's events would look late on every check.
    since = row["trained_marker"] - (LATE_MARGIN if seen_below is not None else timedelta(0))
    return await db.new_late(
        conn, organization_id, optimization_id, since, row["trained_as_of"], seen_below
    )


async def _native_matured(wh: Warehouse, row: Any, optimization: OptimizationSpec) -> bool:
    """New matured exposures in the customer's own table; a table that cannot be read now is
    logged and not due (the hourly poll retries it and reports why)."""
    through = row["trained_through"] or EPOCH
    try:
        return await reward_source.native_matured(wh, row["organization_id"], optimization, through)
    except (Unavailable, Conflict) as exc:
        log.warning("cannot look for new exposures of %s: %s", optimization.id, exc.message)
        return False


async def run_once(wh: Warehouse) -> int:
    """One pass; how many models were trained. Never raises for one model's failure."""
    trained = 0
    for organization_id, optimization_id in await due(wh):
        try:
            await training.train(wh, organization_id, optimization_id)
            trained += 1
        except Conflict as exc:
            if exc.code != "training_in_progress":
                log.warning("scheduled training of %s failed: %s", optimization_id, exc.message)
        except Exception:
            log.exception("scheduled training of %s failed", optimization_id)
    # Auto-pause guardrails are judged every interval, not only when someone reads them.
    await guardrails.run_scheduled(wh)
    return trained


class Scheduler:
    """A background task calling :func:`run_once` every ``interval`` seconds."""

    def __init__(self, wh: Warehouse, interval: float) -> None:
        self.wh = wh
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="levered-training-scheduler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await run_once(self.wh)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the database is down: try again next interval
                log.exception("the training scheduler's pass failed")
