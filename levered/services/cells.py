"""Incremental observation cells: extend an optimization's stored cells to now.

A *pass* (:func:`extend`) re-attributes only the one-hour buckets of exposure time that data
new since its watermark can change, and replaces them (:mod:`levered.db.cell_store`):

- the *frontier* range — from the bucket of the previous maturity frontier (it was stored
  partly) to the new one — when exposures matured in between;
- for every *late* event — received after the previous pass saw its newest event, but timed at
  or before that pass's as-of time — the buckets of the exposures it can change: an exposure or
  reward at time t changes last touch only for exposures in ``[t − window, t]``.

Each replaced bucket is recomputed whole, from the raw events, in the organization's read-only
attribution snapshot (:mod:`levered.db.cell_passes`); a bucket's cells depend only on the data,
not on which pass computes them, so the stored cells always equal a rebuild from scratch
(tested against one and against a plain-Python twin). Cost follows the replaced buckets — new
data, plus at most an hour of already-counted exposures at the frontier — never the history. A
late event costs its own buckets however old it is, so there is no look-back bound to lose data
past. The first pass, a change of the metric or of the attribution (the *fingerprint*), and
``rebuild=True`` rebuild everything in one linear sweep over the history, cut into chunks of at
most :data:`CHUNK_EXPOSURES` exposures (index range scans; no re-reading of the table).

"Unseen by the previous pass" is judged in two steps. ``received_at`` is the inserting
transaction's start time, so a batch that was still committing when the previous snapshot was
taken has a slightly older ``received_at`` than the newest one that pass saw: candidates are
the events received after that newest one less a margin (:data:`LATE_MARGIN`, BRIN ranges).
Among them, an event whose inserting transaction id is below the previous snapshot's xmin had
committed before that pass read, so it was seen and is skipped
(:func:`levered.db.cell_passes.unseen`); only the rest re-attribute buckets. Each late event
therefore costs one pass, not every pass of the margin (with the scheduler's 60 s interval, a
5-minute margin re-read every late event five times).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

import msgspec

from levered.db import Connection
from levered.db import attribution as attribution_db
from levered.db import cell_passes as passes
from levered.db import cell_store as store
from levered.db.attribution import MetricSpec, OptimizationSpec
from levered.db.cell_store import CellState
from levered.db.exposure_relation import MANAGED_EXPOSURES, Exposures
from levered.services import reward_source
from levered.services.warehouse import Warehouse

CHUNK_EXPOSURES: Final = 1_000_000
"""Exposures per chunk statement: its per-user grouping spills ≈ 100 bytes per exposure, well
inside the tenant's 1 GB ``temp_file_limit``, and its rows fit in memory."""
LATE_MARGIN: Final = timedelta(minutes=5)
"""How far before the previous pass's newest ``received_at`` a pass looks for late events."""
PASS_TIMEOUT_S: Final = attribution_db.DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Pass:
    """What a pass did: the state it left, and its size (for operators and benchmarks)."""

    state: CellState
    rebuilt: bool
    ranges: int
    chunks: int
    exposures: int
    """Matured exposures the pass re-attributed."""


def fingerprint(optimization: OptimizationSpec, metric: MetricSpec, source: str = "managed") -> str:
    """What the cells depend on besides the events (``source``: which warehouse the rewards
    come from, :mod:`levered.services.reward_source`): a change means a rebuild."""
    spec = {
        "sql": metric.sql,
        "columns": [metric.anonymous_id_col, metric.timestamp_col, metric.value_col],
        "reward_type": metric.reward_type,
        "window_hours": optimization.conversion_window_hours,
        "context_factors": list(optimization.context_factors),
        "bucket_s": passes.BUCKET.total_seconds(),
        **({"dimensions": list(optimization.dimensions)} if optimization.dimensions else {}),
        **({} if source == "managed" else {"source": source}),
        **(
            {}
            if not metric.outcomes
            else {"outcomes": msgspec.to_builtins(metric.outcomes), "name_col": metric.name_col}
        ),
    }
    return hashlib.sha256(msgspec.json.encode(spec)).hexdigest()[:32]


def _seen_after(marker: datetime | None) -> datetime:
    """Where a pass starts looking for late events: the margin before the previous marker."""
    return passes.EPOCH if marker is None else marker - LATE_MARGIN


def floor_bucket(t: datetime) -> datetime:
    """The start of the bucket holding ``t`` (whole UTC hours)."""
    return passes.ORIGIN + (t - passes.ORIGIN) // passes.BUCKET * passes.BUCKET


def merge(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sorted, disjoint ranges covering the same buckets (touching ranges are joined)."""
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(r for r in ranges if r[0] < r[1]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


async def extend(
    wh: Warehouse,
    organization_id: UUID,
    optimization: OptimizationSpec,
    metric: MetricSpec,
    *,
    as_of: datetime | None = None,
    rebuild: bool = False,
    wait: bool = True,
    timeout_s: float = PASS_TIMEOUT_S,
) -> Pass | None:
    """Bring the optimization's cells to ``as_of`` (default now); the pass, or None when
    ``wait`` is False and another pass holds the optimization's lock. An ``as_of`` at or before
    the stored one changes nothing (cells are only ever extended forward)."""
    as_of = as_of or datetime.now(UTC)
    async with (
        reward_source.open_source(wh, organization_id, metric, timeout_s, optimization) as source,
        wh.pool.acquire() as app,
    ):
        fp = fingerprint(optimization, metric, source.identity)
        if not await store.lock(app, optimization.id, wait=wait):
            return None
        try:
            previous = await store.load_state(app, optimization.id)
            full = rebuild or previous is None or previous.fingerprint != fp
            if previous is not None and not full and as_of <= previous.as_of:
                return Pass(previous, False, 0, 0, 0)
            async with app.transaction():
                done = await _pass(
                    wh,
                    app,
                    organization_id,
                    optimization,
                    metric,
                    source,
                    previous,
                    fp,
                    as_of,
                    full,
                    timeout_s,
                )
            state = await store.load_state(app, optimization.id)
            assert state is not None
            return Pass(state, full, *done)
        finally:
            await store.unlock(app, optimization.id)


async def _pass(
    wh: Warehouse,
    app: Connection,
    organization_id: UUID,
    optimization: OptimizationSpec,
    metric: MetricSpec,
    source: reward_source.RewardSource,
    previous: CellState | None,
    fp: str,
    as_of: datetime,
    full: bool,
    timeout_s: float,
) -> tuple[int, int, int]:
    """Read in the tenant's snapshot, stage, replace; ``app`` is in the pass's transaction."""
    window = timedelta(hours=optimization.conversion_window_hours)
    frontier = as_of - window
    chunks = exposures = 0
    async with reward_source.snapshot(
        wh, organization_id, optimization.id, source, timeout_s
    ) as tenant:
        # First, so the snapshot predates this pass's own write transaction (its xid would
        # hold the snapshot's xmin down: events committed meanwhile would count as unseen).
        seen_below = await passes.snapshot_xmin(tenant)
        staging = await store.stage(app, optimization.id, rebuild=full, timeout_s=timeout_s)
        if full or previous is None:
            ranges = [(passes.EPOCH, floor_bucket(frontier) + passes.BUCKET)]
            seen_after = passes.EPOCH
        else:
            ranges = await dirty_ranges(
                tenant, optimization.id, previous, frontier, window, source.reload, source.exposures
            )
            seen_after = _seen_after(previous.marker)
        async for rows, n in attributed_chunks(
            tenant, source, optimization, metric, ranges,
            frontier=frontier, as_of=as_of, timeout_s=timeout_s, at_least_one=full,
        ):  # fmt: skip
            await staging.add(rows)
            chunks += 1
            exposures += n
        marker = await passes.marker(tenant, optimization.id, seen_after, source.exposures)
        if (
            previous is not None
            and not full
            and (marker is None or (previous.marker is not None and marker < previous.marker))
        ):
            marker = previous.marker
        pending = await passes.pending(tenant, optimization.id, frontier, as_of, source.exposures)
    await store.finish_pass(
        app,
        store.PassWrite(
            organization_id=organization_id,
            optimization_id=optimization.id,
            fingerprint=fp,
            bool_metric=metric.reward_type == "bool",
            rebuild=full,
            ranges=ranges,
            as_of=as_of,
            frontier=frontier,
            marker=marker,
            seen_below=seen_below,
            pending=pending,
            previous=previous,
        ),
        timeout_s,
    )
    return len(ranges), chunks, exposures


async def attributed_chunks(
    tenant: Connection,
    source: reward_source.RewardSource,
    optimization: OptimizationSpec,
    metric: MetricSpec,
    ranges: Iterable[tuple[datetime, datetime]],
    *,
    frontier: datetime,
    as_of: datetime,
    timeout_s: float,
    at_least_one: bool,
) -> AsyncIterator[tuple[passes.ChunkRows, int]]:
    """Attribute ``ranges`` chunk by chunk (:func:`chunks_of`), reading each chunk's rewards
    from ``source``: the chunk's rows and its matured exposures. One loop for the cells, the
    guardrails' cells and a from-scratch attribution as of a past time."""
    window = timedelta(hours=optimization.conversion_window_hours)
    for lo, hi in ranges:
        found = await chunks_of(
            tenant, optimization.id, lo, hi, frontier, at_least_one=at_least_one,
            exposures=source.exposures,
        )  # fmt: skip
        for chunk_lo, chunk_hi, n in found:
            rows_params: tuple[object, ...] = ()
            if source.fetch is not None:
                rows_params = await source.fetch(chunk_lo, min(chunk_hi + window, as_of))
            rows = await passes.chunk(
                tenant,
                source.rows_sql,
                metric.reward_type,
                optimization,
                lo=chunk_lo,
                hi=chunk_hi,
                frontier=frontier,
                as_of=as_of,
                timeout_s=timeout_s,
                rows_params=rows_params,
                weights=metric.weights,
                exposures=source.exposures,
            )
            yield rows, n


async def dirty_ranges(
    tenant: Connection,
    optimization_id: UUID,
    previous: CellState,
    frontier: datetime,
    window: timedelta,
    reload: timedelta | None = None,
    exposures: Exposures = MANAGED_EXPOSURES,
) -> list[tuple[datetime, datetime]]:
    """The bucket ranges a pass from ``previous`` to ``frontier`` must replace (module doc);
    ``reload``: also the counted exposures of that long before the previous frontier (a
    connected warehouse's reload buffer, :mod:`levered.services.reward_source`)."""
    ranges: list[tuple[datetime, datetime]] = []
    if await passes.any_matured(tenant, optimization_id, previous.frontier, frontier, exposures):
        ranges.append((floor_bucket(previous.frontier), floor_bucket(frontier) + passes.BUCKET))
    counted_end = floor_bucket(previous.frontier) + passes.BUCKET
    if reload is not None:
        ranges.append((floor_bucket(previous.frontier - reload), counted_end))
    seen_after = _seen_after(previous.marker)
    late = await passes.late_buckets(
        tenant, optimization_id, seen_after, previous.as_of, previous.seen_below, exposures
    )
    for bucket in late:
        ranges.append((floor_bucket(bucket - window), min(bucket + passes.BUCKET, counted_end)))
    return merge(ranges)


async def chunks_of(
    tenant: Connection,
    optimization_id: UUID,
    lo: datetime,
    hi: datetime,
    frontier: datetime,
    *,
    at_least_one: bool = False,
    exposures: Exposures = MANAGED_EXPOSURES,
) -> list[tuple[datetime, datetime, int]]:
    """``[lo, hi)`` cut at bucket starts into chunks of at most :data:`CHUNK_EXPOSURES`
    matured exposures (one bucket may exceed it alone); empty when it has none, unless
    ``at_least_one`` (a rebuild runs the metric's SQL even without exposures, so a broken
    metric is reported at once)."""
    out: list[tuple[datetime, datetime, int]] = []
    start, n = lo, 0
    found = await passes.histogram(tenant, optimization_id, lo, hi, frontier, exposures)
    for bucket, count in found:
        if n and n + count > CHUNK_EXPOSURES:
            out.append((start, bucket, n))
            start, n = bucket, 0
        n += count
    if n or (at_least_one and not out):
        out.append((start, hi, n))
    return out


def rows_sql(metric: MetricSpec) -> str:
    """The metric's normalized rows on the managed warehouse; ``$1`` is bound per chunk."""
    return reward_source.managed(metric).rows_sql
