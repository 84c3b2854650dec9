"""The training scheduler: every interval, retrain each live optimization with new matured data.

Candidates are live optimizations with a reward metric. One is retrained when the number of
its matured exposures now (an index-only count, no attribution) differs from the ``matured``
count stored with its current version — or it has matured exposures and no version yet.
Rewards that arrive later for already-matured exposures do not trigger a retrain on their own
(the next new matured exposure does; ``POST /api/v2/models/{id}/train`` trains at once).

Every server process runs one; the training lock (:mod:`levered.services.training`) makes
sure two never train the same model at once — the loser's ``training_in_progress`` is not an
error here. Any failure is logged and the loop goes on; a model whose training fails is marked
``failed`` and retried on the next pass that still sees new data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

from levered.db import models as db
from levered.errors import Conflict
from levered.services import training
from levered.services.warehouse import Warehouse

log = logging.getLogger(__name__)


async def due(wh: Warehouse) -> list[tuple[UUID, UUID]]:
    """(organization id, optimization id) of every live optimization with new matured data."""
    out: list[tuple[UUID, UUID]] = []
    async with wh.pool.acquire() as conn:
        for row in await db.scheduler_candidates(conn):
            matured = await db.count_matured(conn, row["optimization_id"], row["window_seconds"])
            trained = row["trained_matured"]
            if matured > 0 and matured != trained:
                out.append((row["organization_id"], row["optimization_id"]))
    return out


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
