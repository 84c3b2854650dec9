"""Where a cells pass reads the metric's reward rows.

Managed warehouse
    The metric's SQL is embedded in the attribution statement and runs as the organization,
    next to the exposures (:func:`levered.services.metrics.metric_rows_sql`).

Connected PostgreSQL
    The exposures Levered records (served, or sent to the ingestion API) stay in Levered's own
    store; the rewards are the customer's. For each chunk of exposures a pass attributes, the
    metric runs *in the customer's database*, bounded to the rewards that can fall in those
    exposures' windows (``[chunk start, chunk end + window]``, at most the as-of time), and
    only those rows come back, bound to the attribution statement as three arrays. So a pass
    reads the customer's rewards in proportion to the new data, never the whole table.

    A connected warehouse keeps no arrival time Levered can see, so late rewards are caught by
    a *reload buffer*: every pass also re-attributes the already-counted exposures of the last
    :data:`RELOAD` before the previous frontier. A reward that lands in the warehouse more than
    :data:`RELOAD` after its own timestamp is counted only by a rebuild
    (``levered models train --rebuild``); docs/warehouse.md says so.

Connected PostgreSQL with a table of the customer's own exposures
    The warehouse-native path: nothing is fetched. The whole pass — the exposures' histogram,
    the attribution of each chunk with the metric inline, the pending counts — runs *inside*
    the customer's database, on its exposures table read through the column mapping
    (:mod:`levered.db.native_exposures`), in one read-only snapshot there; only cells come
    back. The table keeps no arrival time either, so the reload buffer covers late exposures
    as it covers late rewards.

Connected ClickHouse
    The same, with the metric in ClickHouse's dialect run through the guarded path
    (:mod:`levered.services.clickhouse_metrics`): for each chunk, the rows of
    ``[chunk start, chunk end + window]`` come back and are bound into the attribution, which
    runs in Levered's store. Attribution is not pushed down into ClickHouse yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg
import msgspec

from levered.db import (
    Connection,
    cell_passes,
    connected_postgres,
    connections,
    native_exposures,
    pool,
    sandbox,
)
from levered.db import attribution as attribution_db
from levered.db.attribution import MetricSpec, OptimizationSpec
from levered.db.clickhouse_engine import ClickHouseTarget, Unreachable
from levered.db.exposure_relation import MANAGED_EXPOSURES, Exposures
from levered.errors import Conflict, Unavailable, ValidationError
from levered.services import clickhouse_metrics, connected, connected_clickhouse
from levered.services.metrics import connected_rows_sql, metric_columns, metric_rows_sql
from levered.services.warehouse import Reader, Warehouse

RELOAD: Final = timedelta(hours=6)
"""How far back before the previous frontier each pass of a connected warehouse re-reads."""
RELOAD_POLL: Final = timedelta(hours=1)
"""With no new exposures, the scheduler still retrains a connected warehouse's optimization
this often: rewards may have landed in the warehouse meanwhile."""
CHECK_TIMEOUT_S: Final = 10.0
"""The scheduler's look for new exposures in a customer's table (one EXISTS)."""
CHUNK_PARAMS: Final = 8
"""Parameters of :func:`levered.db.cell_passes.chunk` before the bound rows."""


def bound_rows_sql(after: int) -> str:
    """A connected warehouse's normalized rows bound as three arrays after the statement's own
    ``after`` parameters (``$1``, the start, as in the managed rows: fetched rows start there
    anyway, and every statement then gives ``$1`` its type)."""
    a, b, c = after + 1, after + 2, after + 3
    return (
        'SELECT r.anonymous_id, r."timestamp", r.value\n'
        f"FROM unnest(${a}::text[], ${b}::timestamptz[], ${c}::float8[]) "
        'AS r(anonymous_id, "timestamp", value)\nWHERE r."timestamp" >= $1::timestamptz'
    )


Fetch = Callable[[datetime, datetime], Awaitable[tuple[Any, ...]]]


@dataclass(frozen=True)
class RewardSource:
    rows_sql: str
    """The normalized rows as a chunk statement embeds them (:data:`CHUNK_PARAMS`)."""
    fetch: Fetch | None
    """For a connected warehouse: the bound parameters of the rows in ``[start, end]``."""
    identity: str
    """What the cells depend on besides the metric: a different source means a rebuild."""
    reload: timedelta | None
    """The reload buffer (connected warehouses only)."""
    exposures: Exposures = MANAGED_EXPOSURES
    """Where the pass reads the exposures."""
    customer: asyncpg.Connection | None = None
    """The customer's database the pass runs in (a table of their own exposures), or None:
    Levered's store, as the organization."""
    schema: str = "warehouse"
    """What unqualified names in the metric resolve in, on ``customer``."""

    def rows_sql_after(self, params: int) -> str:
        """The rows for a statement with ``params`` parameters of its own."""
        return self.rows_sql if self.fetch is None else bound_rows_sql(params)


def managed(metric: MetricSpec) -> RewardSource:
    sql, _ = metric_rows_sql(metric, attribution_db.BEGINNING)
    return RewardSource(sql, None, "managed", None)


async def identity(conn: Connection, organization_id: UUID) -> str:
    """The source identity of the organization's warehouse, read without its password (the
    scheduler's check)."""
    row = await connections.find(conn, organization_id)
    if row is None:
        return "managed"
    if row["provider"] is None:
        return f"{row['warehouse_provider']}://not-connected"
    settings = row["settings"]
    if "url" in settings:
        return f"{row['provider']}+{settings['url']}/{row['dataset_id']}"
    return identity_of(
        row["provider"],
        settings["host"],
        settings["port"],
        settings["database"],
        row["dataset_id"],
        row["exposures"],
    )


def identity_of(
    provider: str,
    host: str,
    port: int,
    database: str,
    dataset_id: str,
    exposures: dict[str, Any] | None = None,
) -> str:
    found = f"{provider}://{host}:{port}/{database}/{dataset_id}"
    return found if exposures is None else found + NATIVE + _digest(exposures)


NATIVE: Final = "#exposures="
"""What an identity of a source with the customer's own exposures table has in it."""


def is_native(identity: str) -> bool:
    """Whether the source ``identity`` names reads the customer's own exposures table."""
    return NATIVE in identity


def _digest(exposures: dict[str, Any]) -> str:
    """The exposures table and its mapping, as the identity (so a change rebuilds)."""
    canonical = msgspec.json.encode(msgspec.to_builtins(exposures), order="sorted")
    return hashlib.sha256(canonical).hexdigest()[:16]


def _identity(remote: connected.Connected) -> str:
    t = remote.target
    if isinstance(t, ClickHouseTarget):
        return f"{remote.provider}+{t.url}/{remote.dataset_id}"
    exposures = None if remote.exposures is None else msgspec.to_builtins(remote.exposures)
    return identity_of(remote.provider, t.host, t.port, t.database, remote.dataset_id, exposures)


@asynccontextmanager
async def open_source(
    wh: Warehouse,
    organization_id: UUID,
    metric: MetricSpec,
    timeout_s: float,
    optimization: OptimizationSpec,
) -> AsyncIterator[RewardSource]:
    """The reward source of the organization's warehouse, open for one pass (of
    ``optimization``: a customer's exposures table names variants by its design)."""
    remote = await wh.connected(organization_id)
    if remote is None:
        yield managed(metric)
        return
    if isinstance(remote.target, ClickHouseTarget):
        async with _clickhouse(wh, remote, metric, timeout_s) as source:
            yield source
        return
    async with connected.session(remote) as conn:
        reader = Reader(conn, remote.dataset_id, remote)
        try:
            columns = await metric_columns(reader, metric)
        except ValidationError as exc:
            raise Conflict(
                f"the reward metric's SQL failed on the connected warehouse: {exc.message}",
                code="metric_failed",
                details=exc.details,
            ) from exc
        if remote.exposures is not None:
            inline = connected_rows_sql(metric, columns, end="$4")  # the chunk's newest reward
            yield await _native(conn, remote, inline, optimization)
            return
        sql = connected_rows_sql(metric, columns)

        async def fetch(start: datetime, end: datetime) -> tuple[Any, ...]:
            with _customer_faults(conn, alone=True):
                ids, times, values = await connected_postgres.fetch_rewards(
                    conn, sql, start, end, schema=remote.dataset_id, timeout_s=timeout_s
                )
            return (ids, times, values)

        yield RewardSource(bound_rows_sql(CHUNK_PARAMS), fetch, _identity(remote), RELOAD)


async def native_matured(
    wh: Warehouse, organization_id: UUID, optimization: OptimizationSpec, after: datetime
) -> bool:
    """Whether the organization's own exposures table has exposures of ``optimization`` that
    matured since ``after`` (the scheduler's check: one short read-only statement there).
    False when the organization reads no such table."""
    remote = await wh.connected(organization_id)
    if remote is None or remote.exposures is None or isinstance(remote.target, ClickHouseTarget):
        return False
    window = timedelta(hours=optimization.conversion_window_hours)
    async with connected.session(remote) as conn:
        exposures = await _table_exposures(conn, remote, optimization)
        limits = sandbox.Limits(timeout_s=CHECK_TIMEOUT_S)
        async with sandbox.read_only(conn, limits, schema=remote.dataset_id):
            return await cell_passes.any_matured(
                conn, optimization.id, after, datetime.now(UTC) - window, exposures
            )


def _gone() -> Unavailable:
    """The connection to the customer's warehouse broke during a pass."""
    return Unavailable(
        "the connected warehouse went away during training; the pass stored nothing, retry later",
        code="warehouse_unavailable",
        retry_after=30,
    )


@contextmanager
def _customer_faults(customer: asyncpg.Connection, *, alone: bool = False) -> Iterator[None]:
    """A session the customer's server ended (a restart, ``pg_terminate_backend``) surfaces as
    an OS, interface or server error, or already translated as if Levered's own database had
    failed: a closed connection says it was the customer's, a 503 ``warehouse_unavailable``.
    ``alone``: the block uses no other connection, so any transport error is the customer's."""
    try:
        yield
    except (OSError, asyncpg.InterfaceError) as exc:
        if alone or customer.is_closed():
            raise _gone() from exc
        raise
    except (asyncpg.PostgresError, Unavailable) as exc:
        if customer.is_closed():
            raise _gone() from exc
        raise


async def _table_exposures(
    conn: asyncpg.Connection, remote: connected.Connected, optimization: OptimizationSpec
) -> Exposures:
    """The organization's own exposures table as mapped; 409 ``exposures_table_invalid`` when
    it no longer reads so (renamed, a column dropped or retyped)."""
    assert remote.exposures is not None
    try:
        return await native_exposures.exposures(
            conn, remote.dataset_id, remote.exposures, optimization.design_factors
        )
    except ValidationError as exc:
        raise Conflict(
            f"the exposures table of the connected warehouse cannot be read as mapped: "
            f"{exc.message}; map it again with `levered warehouse exposures set`",
            code="exposures_table_invalid",
            details=exc.details,
        ) from exc


async def _native(
    conn: asyncpg.Connection,
    remote: connected.Connected,
    rows_sql: str,
    optimization: OptimizationSpec,
) -> RewardSource:
    """The source of a pass run inside the customer's database on their exposures table, the
    metric's rows inline (``rows_sql``)."""
    exposures = await _table_exposures(conn, remote, optimization)
    await pool.init_connection(conn)  # contexts come back as dicts, as from Levered's store
    return RewardSource(
        rows_sql, None, _identity(remote), RELOAD, exposures, conn, remote.dataset_id
    )


@asynccontextmanager
async def snapshot(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    source: RewardSource,
    timeout_s: float,
) -> AsyncIterator[Connection]:
    """The one read-only snapshot a pass reads its exposures in: Levered's store as the
    organization (:func:`levered.db.attribution.attribution_transaction`), or the customer's
    database when their own exposures table is the source."""
    if source.customer is None:
        async with (
            wh.exposures_session(organization_id) as tenant,
            attribution_db.attribution_transaction(tenant, optimization_id, timeout_s=timeout_s),
        ):
            yield tenant
        return
    customer = source.customer
    with _customer_faults(customer):
        async with sandbox.read_only(
            customer, sandbox.Limits(timeout_s=timeout_s), schema=source.schema
        ):
            await customer.execute(attribution_db.PLAN_EACH_RUN)
            yield customer


@asynccontextmanager
async def _clickhouse(
    wh: Warehouse, remote: connected.Connected, metric: MetricSpec, timeout_s: float
) -> AsyncIterator[RewardSource]:
    """The reward source of a connected ClickHouse: one read-only session for the pass."""
    assert isinstance(remote.target, ClickHouseTarget)
    limits = replace(wh.limits, timeout_s=timeout_s)
    sql = clickhouse_metrics.rows_sql(metric, metric.reward_type)
    async with connected_clickhouse.reader(remote.target, limits, wh.chdb_root) as found:

        async def fetch(start: datetime, end: datetime) -> tuple[Any, ...]:
            try:
                return await clickhouse_metrics.fetch(found, sql, start, end)
            except ValidationError as exc:
                raise Conflict(
                    f"the reward metric's SQL failed on the connected warehouse: {exc.message}",
                    code="metric_failed",
                    details=exc.details,
                ) from exc
            except Unreachable as exc:
                raise _gone() from exc

        yield RewardSource(bound_rows_sql(CHUNK_PARAMS), fetch, _identity(remote), RELOAD)
