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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast
from uuid import UUID

import asyncpg
import numpy as np
import numpy.typing as npt

from levered.bandit.posterior import Posterior, make_posterior
from levered.bandit.sampler import Pool, Sampler
from levered.bandit.variants import Level, VariantSpace
from levered.db import serving as db
from levered.db.pool import create_pool, database_deadline
from levered.errors import NotFound
from levered.schemas.optimizations import Status
from levered.services.assignment_claims import ClaimBatcher
from levered.services.lifecycle import SERVE_MODE, ServeMode

log = logging.getLogger("levered.serving")

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
ContextKey = tuple[tuple[str, str | bool], ...]
"""A context reduced to the (factor, value) pairs the model knows, sorted: the cache key."""

MISSING_TTL_S: Final = 5.0
"""How long an unknown id is answered 404 from memory (creation also notifies)."""
MAX_MISSING: Final = 10_000
MAX_CONTEXTS: Final = 4_096
"""Per config: cached decision pools and winners, one per known-context combination."""
STICKY_GENERATION: Final = 50_000
"""Per config: sticky assignments per generation of the in-process cache (two are kept)."""
LISTENER_NAME: Final = "levered-serving-listener"
"""application_name of the LISTEN connection (visible in pg_stat_activity)."""
PING_S: Final = 5.0
MAX_BACKOFF_S: Final = 5.0
_DB_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class StickyCache:
    """The sticky assignments this process has seen, bounded, recent users first.

    Two generations of at most ``generation`` users each: a new user goes into the current one;
    when it is full it becomes the previous one (the one before is dropped) and a fresh one
    starts; a hit in the previous generation moves the user back into the current one. So a
    user who keeps coming back stays in memory however many new users pass through, and a
    burst of new users evicts only those not seen for a whole generation — who are then read
    from the database on their next serve (the database has every assignment). Clearing one
    dict when it was full, as before, sent every returning user back to the database at once.
    """

    __slots__ = ("current", "generation", "previous")

    def __init__(self, generation: int = STICKY_GENERATION) -> None:
        self.generation = generation
        self.current: dict[str, db.Assignment] = {}
        self.previous: dict[str, db.Assignment] = {}

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)

    def get(self, anonymous_id: str) -> db.Assignment | None:
        hit = self.current.get(anonymous_id)
        if hit is None and self.previous:
            hit = self.previous.pop(anonymous_id, None)
            if hit is not None:
                self.put(anonymous_id, hit)
        return hit

    def put(self, anonymous_id: str, assignment: db.Assignment) -> None:
        current = self.current
        if len(current) >= self.generation and anonymous_id not in current:
            self.previous, self.current = current, {}
            current = self.current
        current[anonymous_id] = assignment


@dataclass
class ServingConfig:
    """Everything a decision needs about one optimization, immutable once built (the caches
    inside only memoize pure functions of it)."""

    id: UUID
    id_bytes: bytes
    organization_id: UUID
    status: str
    mode: ServeMode
    space: VariantSpace
    allowed_idx: I64
    holdout_fraction: float
    sticky: bool
    context_dtypes: dict[str, str]
    live_since: datetime | None
    model_key: tuple[Any, ...]
    model_version: int | None
    sampler: Sampler | None
    mean_sampler: Sampler | None
    vocab: frozenset[tuple[str, type, Any]]
    mab_winner: int | None
    pools: dict[ContextKey, Pool] = field(default_factory=dict)
    winners: dict[ContextKey, int] = field(default_factory=dict)
    variants: dict[int, tuple[dict[str, Level], str]] = field(default_factory=dict)
    assignments: StickyCache = field(default_factory=StickyCache)

    def known_context(self, context: Mapping[str, str | bool]) -> ContextKey:
        """The pairs of ``context`` the model has a column for (others use the population
        model, so they do not change a decision and do not split the caches)."""
        vocab = self.vocab
        if not context or not vocab:
            return ()
        pairs = [(k, v) for k, v in context.items() if (k, type(v), v) in vocab]
        if len(pairs) > 1:
            pairs.sort()
        return tuple(pairs)

    def variant(self, number: int) -> tuple[dict[str, Level], str]:
        hit = self.variants.get(number)
        if hit is None:
            hit = (self.space.variant(number), self.space.key(number))
            if len(self.variants) < MAX_CONTEXTS * 4:
                self.variants[number] = hit
        return hit

    def remember(self, anonymous_id: str, assignment: db.Assignment) -> None:
        self.assignments.put(anonymous_id, assignment)


def build_config(
    row: Mapping[str, Any], posterior: bytes | None, previous: ServingConfig | None
) -> ServingConfig:
    """A config from its database row (CPU work: run it off the event loop).

    The sampler, decision pools and winners are reused from ``previous`` when the model and the
    allowed variants are the same (a status change does not throw away warm caches), and so are
    the in-process sticky assignments while the optimization stays live in the same period
    (a retrain does not move assigned users).
    """
    space = VariantSpace.of(row["design_factors"])
    excluded = row["excluded_combinations"] or []
    model_key = model_key_of(row)
    status = str(row["status"])
    same_model = previous is not None and previous.model_key == model_key
    if previous is not None and same_model:
        allowed_idx = previous.allowed_idx
        sampler, mean_sampler = previous.sampler, previous.mean_sampler
        vocab, mab_winner = previous.vocab, previous.mab_winner
        pools, winners, variants = previous.pools, previous.winners, previous.variants
    else:
        mask = space.allowed_mask(excluded)
        allowed_idx = np.ascontiguousarray(np.flatnonzero(mask).astype(np.int64))
        sampler = mean_sampler = None
        vocab, mab_winner = frozenset(), None
        pools, winners, variants = {}, {}, {}
        if posterior is not None and row["model_version"] is not None:
            decoded = Posterior.decode(posterior)
            if decoded.n_variants != space.size:
                raise ValueError(
                    f"model version {row['model_version']} has {decoded.n_variants} variants, "
                    f"the optimization {space.size}"
                )
            version = int(row["model_version"])
            rules = space.rule_levels(excluded)  # lets the large-space search prune them
            sampler = Sampler(decoded, mask, version, excluded=rules)
            if decoded.model_type == "mab":
                mab_winner = _mab_winner(decoded, allowed_idx)
            else:
                mean_sampler = Sampler(_posterior_mean(decoded), mask, version, excluded=rules)
                vocab = frozenset((n, type(v), v) for n, v in decoded.context_vocab)
    keep_sticky = (
        previous is not None
        and previous.status == "live"
        and status == "live"
        and previous.live_since == row["live_since"]
    )
    config = ServingConfig(
        id=row["id"],
        id_bytes=row["id"].bytes,
        organization_id=row["organization_id"],
        status=status,
        mode=SERVE_MODE[cast(Status, status)],  # the CHECK constraint admits only Status values
        space=space,
        allowed_idx=allowed_idx,
        holdout_fraction=float(row["holdout_percentage"]) / 100.0,
        sticky=bool(row["sticky"]),
        context_dtypes={str(f["name"]): str(f.get("dtype", "str")) for f in row["context_factors"]},
        live_since=row["live_since"],
        model_key=model_key,
        model_version=None if sampler is None else int(row["model_version"]),
        sampler=sampler,
        mean_sampler=mean_sampler,
        vocab=vocab,
        mab_winner=mab_winner,
        pools=pools,
        winners=winners,
        variants=variants,
        assignments=previous.assignments if keep_sticky and previous is not None else StickyCache(),
    )
    if sampler is not None and config.mode == "explore":
        compute_pool(config, ())  # the no-context pool, ready before the first serve
    return config


def model_key_of(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the sampler depends on: when equal, a rebuilt config reuses it and its caches."""
    return (
        row["model_id"],
        row["model_version"],
        repr(row["design_factors"]),
        repr(row["excluded_combinations"] or []),
        row["model_type"],
    )


def compute_pool(config: ServingConfig, key: ContextKey) -> Pool:
    """The decision pool of a known context (blocking: ≈ 1–200 ms, run off the loop)."""
    hit = config.pools.get(key)
    if hit is not None:
        return hit
    assert config.sampler is not None
    pool = config.sampler.pool(dict(key))
    if len(config.pools) >= MAX_CONTEXTS:
        config.pools.clear()
    config.pools[key] = pool
    return pool


def _mab_winner(posterior: Posterior, allowed_idx: I64) -> int:
    if posterior.kind == "beta":
        alpha, beta = posterior.array("alpha"), posterior.array("beta")
        mean = alpha / (alpha + beta)
    else:
        mean = posterior.array("mu")
    return int(allowed_idx[int(np.argmax(mean[allowed_idx]))]) + 1


def _posterior_mean(posterior: Posterior) -> Posterior:
    """The same GLM with a zero covariance: its Thompson draw is the posterior mean θ, so the
    sampler's argmax is the variant with the best mean linear predictor for the context."""
    mean = posterior.array("mean")
    return make_posterior(
        posterior.kind,
        posterior.reward_type,
        posterior.level_counts,
        {"mean": mean, "chol": np.zeros((mean.size, mean.size))},
        context_vocab=list(posterior.context_vocab),
        y_mean=posterior.y_mean,
        y_scale=posterior.y_scale,
        meta=dict(posterior.meta),  # the coding and learned scales: the same column layout
    )


CLAIM_CONNECTIONS: Final = 8


class _ClaimConnection(asyncpg.Connection):
    """A connection used for one sticky-claim statement per acquire, which leaves no session
    state behind: released without the pool's reset round trip (``RESET ALL; UNLISTEN *; …``,
    as much work as the claim itself). An open transaction is still rolled back by asyncpg."""

    def get_reset_query(self) -> str:
        return ""


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
        self._claims = await create_pool(
            self._dsn, min_size=0, max_size=CLAIM_CONNECTIONS, connection_class=_ClaimConnection
        )
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
