"""The managed warehouse: idempotent batch writes, and reads confined to one organization.

Writes (ingestion)
    A batch goes in with one ``COPY`` statement (the fastest path asyncpg has, FACTS.md), which
    PostgreSQL runs as one transaction: all of its rows or none, committed before it returns
    (no BEGIN/COMMIT round trips). ``COPY`` is not idempotent: a row whose idempotency key is
    already stored (a retried batch, or an identical batch committed concurrently) aborts it
    with ``UniqueViolationError``. That batch is then redone as one
    ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`` statement (again one transaction),
    and the rows it did not insert are the duplicates. Concurrent identical batches are
    serialized by the unique index itself: the second waits for the first to commit, then
    conflicts. Keys repeated *inside* one batch are removed by the caller before it gets here.
    Callers must not wrap these writes in a transaction of their own (the failed ``COPY`` would
    abort it before the redo). Every other failure of the write becomes
    :class:`~levered.errors.Unavailable` (503 + ``Retry-After``): the statement rolled back, so
    nothing of the batch is stored and the client may resend it as is. ``synchronous_commit``
    is left on, so a batch is durable when this returns.

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
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg

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

ExposureRow = tuple[UUID, UUID, str, dict[str, Any], int, dict[str, Any], datetime, str | None]
"""One exposure in :data:`EXPOSURE_COLUMNS` order."""
RewardRow = tuple[UUID, str, str, float, datetime, UUID | None, dict[str, Any], str | None]
"""One reward in :data:`REWARD_COLUMNS` order."""


async def store_exposures(conn: Connection, rows: Sequence[ExposureRow]) -> int:
    """Store a batch atomically; returns how many rows were new (the rest were duplicates)."""
    return await _store(
        conn, "exposures", EXPOSURE_COLUMNS, INSERT_EXPOSURES_IGNORING_DUPLICATES, rows
    )


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
    return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <n>"


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
