"""The managed warehouse: idempotent batch writes, and reads confined to one organization.

Writes (ingestion)
    A batch goes in with one ``COPY`` statement (asyncpg's fastest path), which
    PostgreSQL runs as one transaction: all of its rows or none, committed before it returns
    (no BEGIN/COMMIT round trips). ``COPY`` is not idempotent: a row whose idempotency key is
    already stored (a retried batch, or an identical batch committed concurrently) aborts it
    with ``UniqueViolationError``. That batch is then redone as one
    ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`` statement (again one transaction),
    and the rows it did not insert are the duplicates. Concurrent identical batches are
    serialized by the unique index itself: the second waits for the first to commit, then
    conflicts. Keys repeated *inside* one batch are removed by the caller before it gets here.
    A client resending a backlog sends batch after batch of duplicates, each paying the failed
    ``COPY`` and then the redo: so once an organization's batch had duplicates, its next batch
    of the same table goes straight to the ``INSERT``, and the first one that inserts every
    row sends the following ones back to ``COPY`` (per process; a guess, never a correctness
    matter — both statements store exactly the new rows).
    Callers must not wrap these writes in a transaction of their own (the failed ``COPY`` would
    abort it before the redo). Every other failure of the write becomes
    :class:`~levered.errors.Unavailable` (503 + ``Retry-After``): the statement rolled back, so
    nothing of the batch is stored and the client may resend it as is. ``synchronous_commit``
    is left on, so a batch is durable when this returns.

Twins of served exposures (:func:`store_exposures` with ``served``)
    A serve stores its own exposure (:func:`levered.db.serving.copy_exposures`); an app that
    also sends that exposure here would store it twice, and last-touch attribution would then
    count the user twice (one 0, one 1: rates halved). So an ingested exposure is the *twin* of
    a served one when both have the same organization, optimization, anonymous id and variant
    number and their timestamps are at most :data:`TWIN_WINDOW` (60 s) apart, and a twin is
    stored once, as the served row (it carries the decision id, propensity and model version
    that replay and bias correction need). Whichever of the two arrives second is the one not
    stored: a batch here skips events whose served twin is stored (they count as duplicates);
    the serve buffer's flush deletes ingested twins (``decision_id IS NULL``) in the
    transaction of its COPY. A decision id alone does not identify a serve (a sticky user gets
    the same one on every serve), which is why the rule is the user, variant and time.

    60 s: the served time is the server's clock at the serve; the ingested one is the SDK's
    clock when the app called ``track_exposure`` (or, when absent, the time the batch reached
    this server, after the SDK's 1 s batching and any retry backoff, capped at 30 s). 60 s
    covers those and a few seconds of clock skew, and is far below any conversion window (an
    hour or more): merging two exposures of the same user and variant that close changes no
    last-touch credit unless a reward falls between them.

    Only events of optimizations with ``first_served_at`` set (migration 0012: those with
    served exposures, read in the batch's one context query) are probed, so the common path
    stays one COPY; likewise a flush only probes for optimizations with ``first_ingested_at``
    set (set by a statement of its own before an optimization's first ingested rows). A batch
    with events to probe goes in with one ``INSERT … SELECT FROM unnest(…) WHERE NOT EXISTS
    (served twin) ON CONFLICT DO NOTHING`` (an index range probe of
    ``exposures_attribution_idx`` per event of a served optimization, none for the others),
    bracketed by a *shared* advisory lock per served optimization; the flush takes the same
    locks *exclusively* for its transaction. Such a batch and a flush of the same optimization
    thus never overlap, and each one's probe sees the other's committed rows: no race between
    them. What remains: an optimization's very first flush and a batch that read "never
    served" just before that flush committed are not ordered (a window of milliseconds, once
    per optimization).

Reads on behalf of an organization (warehouse queries, metric SQL)
    Enforced by PostgreSQL, not by this code (``migrations/0002_warehouse_security.sql``): each
    organization has its own LOGIN role with a random name and a generated password, mapped to
    it in ``warehouse.tenant_roles`` (readable only by the app). Row-level security on the
    event tables keys on ``session_user`` through that mapping. :func:`tenant_connection` logs
    in *as* that role, so SQL run on the connection, however hand-written, can only see the
    organization's rows: ``SET ROLE`` can only reach ``levered_tenant`` (session_user is
    unchanged), ``RESET ROLE`` returns to the tenant itself, ``set_config`` changes nothing the
    policies read, and the control-plane tables are not granted at all. A superuser connection
    that ``SET ROLE``s to a tenant role sees *no* rows (session_user is not a tenant): that path
    could be escaped with ``RESET ROLE`` and so is made to fail closed.

    The password is stored in plain text because the app must present it; the table is as
    private as the superuser password file next to the cluster. A tenant may change its own
    password (PostgreSQL allows that for any role); :func:`tenant_connection` then resets it.
    Creating roles needs a superuser or ``CREATEROLE`` with ``ADMIN`` on ``levered_tenant``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg
import msgspec

from levered.db import Connection
from levered.db.pool import init_connection
from levered.errors import Unavailable

log = logging.getLogger(__name__)
RETRY_AFTER_S: Final = 1

# -- writes -----------------------------------------------------------------------------------

EXPOSURE_COLUMNS: Final = (
    "organization_id",
    "optimization_id",
    "anonymous_id",
    "variant",
    "variant_number",
    "context",
    "timestamp",
    "idempotency_key",
)
REWARD_COLUMNS: Final = (
    "organization_id",
    "anonymous_id",
    "name",
    "value",
    "timestamp",
    "optimization_id",
    "properties",
    "idempotency_key",
)

INSERT_EXPOSURES_IGNORING_DUPLICATES: Final = """
INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, variant,
                                 variant_number, context, "timestamp", idempotency_key)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::integer[],
                     $6::jsonb[], $7::timestamptz[], $8::text[])
ON CONFLICT DO NOTHING
"""
INSERT_REWARDS_IGNORING_DUPLICATES: Final = """
INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "timestamp",
                               optimization_id, properties, idempotency_key)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[],
                     $6::uuid[], $7::jsonb[], $8::text[])
ON CONFLICT DO NOTHING
"""

JsonObject = dict[str, Any] | msgspec.Raw
"""A jsonb value: a dict, or an object's JSON text as received (the pool's codec writes both)."""
ExposureRow = tuple[UUID, UUID, str, JsonObject, int, JsonObject, datetime, str | None]
"""One exposure in :data:`EXPOSURE_COLUMNS` order."""
RewardRow = tuple[UUID, str, str, float, datetime, UUID | None, dict[str, Any], str | None]
"""One reward in :data:`REWARD_COLUMNS` order."""

TWIN_WINDOW: Final = timedelta(seconds=60)
"""How far apart an ingested exposure and a served one may be timed and still be one exposure
(module doc: why 60 s)."""
TWIN_LOCK: Final = 0x6C76_7477
"""First key of the advisory locks (second: ``hashtext`` of the optimization id) that keep a
serve flush and an ingestion batch of the same optimization from overlapping."""

# Before an optimization's first ingested rows, in a statement of its own: whoever sees those
# rows sees the mark, so a serve flush never skips a twin it could see (SETTLE_TWINS).
MARK_INGESTED: Final = """
UPDATE optimizations SET first_ingested_at = now()
WHERE id = ANY($1::uuid[]) AND first_ingested_at IS NULL
"""
# Shared: batches of one optimization run side by side; a flush (exclusive) waits for them and
# they for it. Keys are taken in ascending order on both sides, so two lockers cannot deadlock.
LOCK_TWIN_CHECKS: Final = """
SELECT pg_advisory_lock_shared($1, k)
FROM (SELECT DISTINCT hashtext(id::text) AS k FROM unnest($2::uuid[]) AS id ORDER BY 1) AS keys
"""
UNLOCK_TWIN_CHECKS: Final = """
SELECT pg_advisory_unlock_shared($1, k)
FROM (SELECT DISTINCT hashtext(id::text) AS k FROM unnest($2::uuid[]) AS id) AS keys
"""
# $9: probe this row (its optimization has served exposures). The EXISTS stays a per-row
# subplan under NOT (… AND …): an index range scan of exposures_attribution_idx, and only for
# rows with $9 true.
INSERT_EXPOSURES_WITHOUT_SERVED_TWINS: Final = """
INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, variant,
                                 variant_number, context, "timestamp", idempotency_key)
SELECT t.organization_id, t.optimization_id, t.anonymous_id, t.variant, t.variant_number,
       t.context, t.at, t.idempotency_key
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::integer[], $6::jsonb[],
            $7::timestamptz[], $8::text[], $9::boolean[])
    AS t(organization_id, optimization_id, anonymous_id, variant, variant_number, context, at,
         idempotency_key, probe)
WHERE NOT (t.probe AND EXISTS (
    SELECT 1 FROM warehouse.exposures s
    WHERE s.optimization_id = t.optimization_id AND s.anonymous_id = t.anonymous_id
      AND s."timestamp" + interval '0' BETWEEN t.at - $10::interval AND t.at + $10::interval
      AND s.decision_id IS NOT NULL AND s.organization_id = t.organization_id
      AND s.variant_number = t.variant_number))
ON CONFLICT DO NOTHING
"""
"""Each probe is one user's few exposures, found by ``exposures_attribution_idx``
(optimization, anonymous id, time). ``+ interval '0'`` keeps the time range from being an index
condition: before ``ANALYZE`` had run on a new table, the planner probed by
``exposures_time_idx`` (optimization, time) instead, which reads every exposure of the
optimization within ±60 s — all of them for a backfill whose events share a timestamp. Batch
times grew with the table (44 → 1,017 ms over 30,000 rows; 63 s for a 100,000-event backfill
through the CLI) until autovacuum analyzed it; with the fence they stay at 7 ms."""


async def store_exposures(
    conn: Connection,
    rows: Sequence[ExposureRow],
    *,
    served: frozenset[UUID] = frozenset(),
    unmarked: frozenset[UUID] = frozenset(),
) -> int:
    """Store a batch atomically; returns how many rows were new (the rest were duplicates).

    ``served``: the batch's optimizations that have served exposures; their events are not
    stored where a served twin is (module doc), and count as duplicates. ``unmarked``: those
    without ``first_ingested_at``; it is set, and committed, before the rows are stored.
    """
    if unmarked:
        try:
            await conn.execute(MARK_INGESTED, list(unmarked))
        except _WRITE_FAILURES as exc:
            raise _unavailable(exc) from exc
    if not served:
        return await _store(
            conn, "exposures", EXPOSURE_COLUMNS, INSERT_EXPOSURES_IGNORING_DUPLICATES, rows
        )
    if not rows:
        return 0
    ids = list(served)
    probe = [row[1] in served for row in rows]
    try:
        await conn.execute(LOCK_TWIN_CHECKS, TWIN_LOCK, ids)
        # One statement, outside any transaction block; committed before the unlock below.
        status = await conn.execute(
            INSERT_EXPOSURES_WITHOUT_SERVED_TWINS, *zip(*rows, strict=True), probe, TWIN_WINDOW
        )
        await conn.execute(UNLOCK_TWIN_CHECKS, TWIN_LOCK, ids)
    except _WRITE_FAILURES as exc:
        # A lock left held by a failed statement is released with the connection: the pool's
        # reset runs pg_advisory_unlock_all(), a broken connection ends its session.
        raise _unavailable(exc) from exc
    return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <n>"


async def store_rewards(conn: Connection, rows: Sequence[RewardRow]) -> int:
    """Store a batch atomically; returns how many rows were new (the rest were duplicates)."""
    return await _store(conn, "rewards", REWARD_COLUMNS, INSERT_REWARDS_IGNORING_DUPLICATES, rows)


async def _store(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    insert_ignoring_duplicates: str,
    rows: Sequence[tuple[Any, ...]],
) -> int:
    if not rows:
        return 0
    resending = (table, rows[0][0])  # (the table, the batch's organization)
    if resending not in _RESENDING:
        # One statement, outside any transaction block: its own all-or-nothing transaction.
        try:
            await conn.copy_records_to_table(
                table, schema_name="warehouse", columns=list(columns), records=rows
            )
            return len(rows)
        except asyncpg.UniqueViolationError:
            pass  # some key is already stored: redo the batch, skipping those rows
        except _WRITE_FAILURES as exc:
            raise _unavailable(exc) from exc
    try:
        status = await conn.execute(insert_ignoring_duplicates, *zip(*rows, strict=True))
    except _WRITE_FAILURES as exc:
        raise _unavailable(exc) from exc
    stored = int(status.rsplit(" ", 1)[1])  # "INSERT 0 <n>"
    if stored < len(rows):
        if len(_RESENDING) >= _RESENDING_CAPACITY:
            _RESENDING.clear()
        _RESENDING.add(resending)
    else:
        _RESENDING.discard(resending)
    return stored


_RESENDING: Final[set[tuple[str, UUID]]] = set()
"""(table, organization) whose last batch here had duplicates: the next one skips ``COPY``."""
_RESENDING_CAPACITY: Final = 10_000


_WRITE_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _unavailable(exc: BaseException) -> Unavailable:
    # Logged here: the client only sees a 503, and a failure that is not transient (a broken
    # table, a full disk) must be visible to the operator, not only retried by clients.
    log.error("warehouse write failed: %s: %s", exc.__class__.__name__, exc)
    return Unavailable(
        "the warehouse write failed and nothing of this batch was stored; retry the same batch "
        "(idempotency keys make that safe)",
        retry_after=RETRY_AFTER_S,
        details={"cause": exc.__class__.__name__},
    )


# -- tenant roles -----------------------------------------------------------------------------

TENANT_GROUP: Final = "levered_tenant"
_ROLE_NAME = re.compile(r"^levered_org_[0-9a-f]{16}$")
_PASSWORD = re.compile(r"^[0-9a-f]{48}$")
_TENANT_LOCK: Final = 0x6C76_7274  # first key of the advisory lock that serializes role setup

SELECT_TENANT_ROLE: Final = """
SELECT t.role_name, t.password, r.rolname IS NOT NULL AS role_exists
FROM warehouse.tenant_roles t LEFT JOIN pg_roles r ON r.rolname = t.role_name
WHERE t.organization_id = $1
"""
INSERT_TENANT_ROLE: Final = """
INSERT INTO warehouse.tenant_roles (organization_id, role_name, password) VALUES ($1, $2, $3)
"""
LOCK_TENANT_SETUP: Final = "SELECT pg_advisory_xact_lock($1, hashtext($2::text))"


@dataclass(frozen=True)
class TenantRole:
    organization_id: UUID
    name: str
    password: str


async def ensure_tenant_role(conn: Connection, organization_id: UUID) -> TenantRole:
    """The organization's warehouse login role, created (with its mapping) on first use.

    ``conn`` must be the app's privileged connection. Safe to call concurrently from several
    processes: setup is serialized per organization by an advisory lock.
    """
    found = await conn.fetchrow(SELECT_TENANT_ROLE, organization_id)
    if found is not None and found["role_exists"]:
        return TenantRole(organization_id, found["role_name"], found["password"])
    async with conn.transaction():
        await conn.execute(LOCK_TENANT_SETUP, _TENANT_LOCK, str(organization_id))
        found = await conn.fetchrow(SELECT_TENANT_ROLE, organization_id)
        if found is None:
            role = TenantRole(
                organization_id, f"levered_org_{secrets.token_hex(8)}", secrets.token_hex(24)
            )
            await conn.execute(INSERT_TENANT_ROLE, organization_id, role.name, role.password)
            exists = False
        else:
            role = TenantRole(organization_id, found["role_name"], found["password"])
            exists = found["role_exists"]
        if not exists:
            # DDL takes no bind parameters; both values are checked against strict patterns.
            name, password = _checked(role)
            await conn.execute(
                f"CREATE ROLE {name} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
                f"NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 20 PASSWORD '{password}' "
                f"IN ROLE {TENANT_GROUP}"
            )
    return role


async def reset_tenant_password(conn: Connection, role: TenantRole) -> None:
    name, password = _checked(role)
    await conn.execute(f"ALTER ROLE {name} PASSWORD '{password}'")


@asynccontextmanager
async def tenant_connection(
    admin: Connection, dsn: str, organization_id: UUID
) -> AsyncIterator[asyncpg.Connection]:
    """A new connection logged in as the organization's tenant role (see the module doc).

    ``admin`` is the app's own connection (to look up or create the role); ``dsn`` says where
    the database is — its user and password are replaced by the tenant's. The connection has
    the app's type codecs and is closed on exit.
    """
    role = await ensure_tenant_role(admin, organization_id)
    try:
        conn = await asyncpg.connect(dsn, user=role.name, password=role.password)
    except asyncpg.InvalidPasswordError:
        # The tenant changed its own password (any role may): take it back and log in again.
        await reset_tenant_password(admin, role)
        conn = await asyncpg.connect(dsn, user=role.name, password=role.password)
    try:
        await init_connection(conn)
        yield conn
    finally:
        await conn.close()


def _checked(role: TenantRole) -> tuple[str, str]:
    if not _ROLE_NAME.match(role.name) or not _PASSWORD.match(role.password):
        raise ValueError(f"refusing a malformed tenant role {role.name!r}")
    return role.name, role.password
