"""What each server process keeps in memory to serve: one :class:`ServingConfig` per optimization.

Loaded lazily on the first serve of an optimization (one load per id however many requests
wait for it), then kept up to date by PostgreSQL ``LISTEN levered_serving``: the triggers of
migrations/0006_serving.sql send an optimization's id whenever its status, design, exclusions,
holdout, stickiness or current model version changes. On a notification the config is
rebuilt in the background and swapped in whole; serves keep using the previous one meanwhile,
so a reload never blocks a request (a new model version is picked up within one database round
trip plus the rebuild, typically a few milliseconds).

The listener runs on its own connection (not from the pool). When it is lost it reconnects with
backoff; notifications sent while it was away are gone, so every cached config is dropped on
reconnect and reloaded on its next serve. While the database is unreachable, serving continues
from the cache (stale but available).

CPU-heavy work — decoding a posterior, building a :class:`~levered.bandit.sampler.Sampler`,
a context's decision pool (the winners of the version's 1,000 posterior samples: ≈ 5–20 ms at
1,000 variants) — runs on one worker thread (the numba kernels release the GIL), never on the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final
from uuid import UUID

import asyncpg

from levered.bandit.sampler import Pool
from levered.db import serving as db
from levered.db.pool import create_pool, database_deadline
from levered.errors import NotFound
from levered.services.assignment_claims import ClaimBatcher
from levered.services.serving_config import (
    ContextKey,
    ServingConfig,
    build_config,
    compute_pool,
    model_key_of,
)

log = logging.getLogger("levered.serving")


MISSING_TTL_S: Final = 5.0
"""How long an unknown id is answered 404 from memory (creation also notifies)."""
MAX_MISSING: Final = 10_000
LISTENER_NAME: Final = "levered-serving-listener"
"""application_name of the LISTEN connection (visible in pg_stat_activity)."""
PING_S: Final = 5.0
MAX_BACKOFF_S: Final = 5.0
_DB_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


CLAIM_CONNECTIONS: Final = 8


class ServingState:
    """The per-process cache of :class:`ServingConfig` with its LISTEN connection, and a small
    pool of its own for the sticky claims (:attr:`claims`)."""

    def __init__(self, pool: asyncpg.Pool, dsn: str | None) -> None:
        self.pool = pool
        self._dsn = dsn
        self._configs: dict[UUID, ServingConfig] = {}
        self._missing: dict[UUID, float] = {}
        self._loading: dict[UUID, asyncio.Task[ServingConfig | None]] = {}
        self._reloading: dict[UUID, asyncio.Task[None]] = {}
        self._dirty: set[UUID] = set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="levered-serving")
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.reloads = 0
        self.reconnects = 0
        self._claims: asyncpg.Pool | None = None
        self.claim_batcher = ClaimBatcher(lambda: self.claims)

    @property
    def claims(self) -> asyncpg.Pool:
        """Where sticky assignments are claimed and read: the claim pool once started, else the
        app's pool."""
        return self._claims or self.pool

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; waits (briefly) for the first connection so that nothing loaded
        after start can miss a notification."""
        if self._dsn is None or self._listener is not None:
            return
        # min_size 0: no connection is opened here, so a database that is down only fails claims.
        self._claims = await create_pool(self._dsn, min_size=0, max_size=CLAIM_CONNECTIONS)
        self._listener = asyncio.create_task(self._listen_forever(), name="levered-serving-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), 10)

    async def close(self) -> None:
        tasks = [t for t in (self._listener, *self._reloading.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._listener = None
        await self.claim_batcher.close()
        if self._claims is not None:
            claims, self._claims = self._claims, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(claims.close(), 5)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- reads -----------------------------------------------------------------------------

    async def get(self, optimization_id: UUID) -> ServingConfig:
        config = self._configs.get(optimization_id)
        if config is not None:
            return config
        missing_since = self._missing.get(optimization_id)
        if missing_since is not None:
            if time.monotonic() - missing_since < MISSING_TTL_S:
                raise _not_found(optimization_id)
            del self._missing[optimization_id]
        task = self._loading.get(optimization_id)
        if task is None:
            task = asyncio.create_task(self._first_load(optimization_id))
            self._loading[optimization_id] = task
        async with database_deadline("loading the optimization"):
            found = await asyncio.shield(task)  # the load goes on for later requests
        if found is None:
            raise _not_found(optimization_id)
        return found

    def cached(self, optimization_id: UUID) -> ServingConfig | None:
        return self._configs.get(optimization_id)

    async def decision_pool(self, config: ServingConfig, key: ContextKey) -> Pool:
        hit = config.pools.get(key)
        if hit is not None:
            return hit
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, compute_pool, config, key)

    # -- loading ---------------------------------------------------------------------------

    async def _load(self, optimization_id: UUID) -> ServingConfig | None:
        previous = self._configs.get(optimization_id)
        async with self.pool.acquire() as conn:
            record = await db.select_config(conn, optimization_id)
            if record is None:
                return None
            row = dict(record)
            posterior = None
            same = previous is not None and previous.model_key == model_key_of(row)
            if row["model_version"] is not None and not same:
                posterior = await db.select_posterior(conn, row["model_id"], row["model_version"])
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, build_config, row, posterior, previous)

    def _store(self, optimization_id: UUID, config: ServingConfig | None) -> None:
        if config is None:
            self._configs.pop(optimization_id, None)
            if len(self._missing) >= MAX_MISSING:
                self._missing.clear()
            self._missing[optimization_id] = time.monotonic()
        else:
            self._configs[optimization_id] = config

    async def _first_load(self, optimization_id: UUID) -> ServingConfig | None:
        self._dirty.discard(optimization_id)
        try:
            config = await self._load(optimization_id)
            self._store(optimization_id, config)
        finally:
            del self._loading[optimization_id]
        if optimization_id in self._dirty:  # changed while loading: load once more
            self._schedule_reload(optimization_id)
        return config

    def _schedule_reload(self, optimization_id: UUID) -> None:
        self._dirty.add(optimization_id)
        if optimization_id not in self._reloading:
            self._reloading[optimization_id] = asyncio.create_task(self._reload(optimization_id))

    async def _reload(self, optimization_id: UUID) -> None:
        try:
            while optimization_id in self._dirty:
                self._dirty.discard(optimization_id)
                try:
                    config = await self._load(optimization_id)
                except Exception:
                    # Drop it: the next serve loads it again (and reports a failure itself).
                    log.exception("reloading optimization %s failed", optimization_id)
                    self._configs.pop(optimization_id, None)
                    return
                self._store(optimization_id, config)
                self.reloads += 1
        finally:
            self._reloading.pop(optimization_id, None)

    # -- LISTEN ----------------------------------------------------------------------------

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        try:
            optimization_id = UUID(str(payload))
        except ValueError:
            return
        self._missing.pop(optimization_id, None)
        if optimization_id in self._loading:
            self._dirty.add(optimization_id)
        elif optimization_id in self._configs:
            self._schedule_reload(optimization_id)

    def _forget_everything(self) -> None:
        self._configs.clear()
        self._missing.clear()
        self._dirty.update(self._loading)

    async def _listen_forever(self) -> None:
        assert self._dsn is not None
        backoff = 0.1
        first = True
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": LISTENER_NAME}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(db.CHANNEL, self._on_notify)
                if not first:
                    self.reconnects += 1
                    log.warning("serving listener reconnected; dropping cached configs")
                self._forget_everything()
                first = False
                backoff = 0.1
                self.listening.set()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), PING_S)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), PING_S)
            except _DB_FAILURES as exc:
                log.warning("serving listener lost the database (%s); retrying", exc)
            finally:
                self.listening.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)


def _not_found(optimization_id: UUID) -> NotFound:
    return NotFound(f"optimization {optimization_id} not found")
