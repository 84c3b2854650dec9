"""Tenant isolation of the managed warehouse is enforced by PostgreSQL (migration 0002).

Every test logs in as an organization's own role (what metric SQL and warehouse queries do)
and then tries, with hand-written SQL, to see or touch another organization's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest

from levered.db.warehouse import ensure_tenant_role, tenant_connection
from tests.conftest import Org

pytestmark = pytest.mark.anyio

INSERT_EXPOSURE = """
INSERT INTO warehouse.exposures (organization_id, optimization_id, anonymous_id, variant,
                                 variant_number, "timestamp")
VALUES ($1, gen_random_uuid(), $2, '{}', 1, $3)
"""
INSERT_REWARD = """
INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, "timestamp")
VALUES ($1, $2, 'signup', $3)
"""
WHEN = datetime(2026, 6, 16, tzinfo=UTC)


@pytest.fixture
async def rows(conn: asyncpg.Connection, org: Org, other_org: Org) -> None:
    for owner, prefix, n in ((org, "a", 3), (other_org, "b", 2)):
        for i in range(n):
            await conn.execute(INSERT_EXPOSURE, owner.id, f"{prefix}{i}", WHEN)
            await conn.execute(INSERT_REWARD, owner.id, f"{prefix}{i}", WHEN)


@pytest.fixture
async def tenant_a(
    conn: asyncpg.Connection, db_url: str, org: Org, rows: None
) -> AsyncIterator[asyncpg.Connection]:
    async with tenant_connection(conn, db_url, org.id) as tenant:
        yield tenant


async def visible_orgs(tenant: asyncpg.Connection) -> dict[str, set[UUID]]:
    return {
        table: {r[0] for r in await tenant.fetch(f"SELECT organization_id FROM warehouse.{table}")}
        for table in ("exposures", "rewards")
    }


async def test_a_tenant_sees_only_its_own_rows(
    tenant_a: asyncpg.Connection, conn: asyncpg.Connection, db_url: str, org: Org, other_org: Org
) -> None:
    assert await visible_orgs(tenant_a) == {"exposures": {org.id}, "rewards": {org.id}}
    assert await tenant_a.fetchval("SELECT count(*) FROM warehouse.exposures") == 3
    # A filter naming the other organization finds nothing; it cannot widen the policy.
    assert (
        await tenant_a.fetchval(
            "SELECT count(*) FROM warehouse.rewards WHERE organization_id = $1 OR true",
            other_org.id,
        )
        == 3
    )
    async with tenant_connection(conn, db_url, other_org.id) as tenant_b:
        assert await visible_orgs(tenant_b) == {
            "exposures": {other_org.id},
            "rewards": {other_org.id},
        }


async def test_role_switching_cannot_escape(
    tenant_a: asyncpg.Connection, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    other_role = await ensure_tenant_role(conn, other_org.id)
    superuser = await conn.fetchval("SELECT current_user")
    for statement in (
        f"SET ROLE {other_role.name}",
        f"SET ROLE {superuser}",
        f"SET SESSION AUTHORIZATION {superuser}",
        f"SET SESSION AUTHORIZATION {other_role.name}",
        f"SELECT set_config('role', '{other_role.name}', false)",
        f"SELECT set_config('session_authorization', '{superuser}', false)",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await tenant_a.execute(statement)
        assert await visible_orgs(tenant_a) == {"exposures": {org.id}, "rewards": {org.id}}

    # The group role is reachable, but session_user (what the policy reads) does not change.
    # (A later migration may also forbid SET ROLE to the group: just as good.)
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await tenant_a.execute("SET ROLE levered_tenant")
    assert await visible_orgs(tenant_a) == {"exposures": {org.id}, "rewards": {org.id}}
    await tenant_a.execute("RESET ROLE")
    await tenant_a.execute("SET ROLE NONE")
    assert await visible_orgs(tenant_a) == {"exposures": {org.id}, "rewards": {org.id}}


async def test_settings_cannot_pick_another_organization(
    tenant_a: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    for name in ("app.organization_id", "levered.organization_id", "request.jwt.claim.org"):
        await tenant_a.execute(f"SELECT set_config('{name}', '{other_org.id}', false)")
    await tenant_a.execute("SET row_security = off")  # only errors where a policy would apply
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await tenant_a.fetch("SELECT * FROM warehouse.exposures")
    await tenant_a.execute("SET row_security = on")
    assert await visible_orgs(tenant_a) == {"exposures": {org.id}, "rewards": {org.id}}
    assert await tenant_a.fetchval("SELECT warehouse.tenant_organization()") == org.id


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM public.api_keys",
        "SELECT * FROM public.users",
        "SELECT * FROM public.organizations",
        "SELECT * FROM public.oauth_tokens",
        "SELECT * FROM warehouse.tenant_roles",
        'INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, "timestamp") '
        "VALUES (gen_random_uuid(), 'x', 'y', now())",
        "UPDATE warehouse.exposures SET anonymous_id = 'x'",
        "DELETE FROM warehouse.rewards",
        "TRUNCATE warehouse.rewards",
        "ALTER TABLE warehouse.exposures DISABLE ROW LEVEL SECURITY",
        "DROP POLICY tenant_read ON warehouse.exposures",
        "ALTER ROLE levered_tenant BYPASSRLS",
        "CREATE ROLE sneaky LOGIN",
        "GRANT SELECT ON warehouse.tenant_roles TO levered_tenant",
    ],
)
async def test_everything_but_reading_its_rows_is_denied(
    tenant_a: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await tenant_a.execute(statement)


async def test_a_superuser_set_role_fails_closed(
    conn: asyncpg.Connection, org: Org, rows: None
) -> None:
    # Only logging in as the tenant counts: SET ROLE from the app's connection (which user SQL
    # could undo with RESET ROLE) sees no rows at all instead of the organization's.
    role = await ensure_tenant_role(conn, org.id)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {role.name}")
        assert await conn.fetchval("SELECT count(*) FROM warehouse.exposures") == 0


async def test_role_names_do_not_reveal_organizations(
    conn: asyncpg.Connection, org: Org, other_org: Org, tenant_a: asyncpg.Connection
) -> None:
    """Tenants cannot list roles (migration 0011, test_warehouse_catalogs), but a name still
    shows through the regrole type's output, so no name may carry an organization id."""
    await ensure_tenant_role(conn, other_org.id)
    own = await tenant_a.fetchval("SELECT current_user")
    names = [
        r[0]
        for r in await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE 'levered_org_%'")
    ]
    assert own in names
    assert len(names) >= 2
    for name in names:
        assert org.id.hex not in name and other_org.id.hex not in name
        assert org.id.hex[:16] != name.removeprefix("levered_org_")


async def test_ensure_tenant_role_is_idempotent_under_concurrency(
    db_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    others = [await asyncpg.connect(db_url) for _ in range(4)]
    try:
        roles = await asyncio.gather(*(ensure_tenant_role(c, org.id) for c in others))
    finally:
        for c in others:
            await c.close()
    assert len({r.name for r in roles}) == 1
    assert await ensure_tenant_role(conn, org.id) == roles[0]
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM warehouse.tenant_roles WHERE organization_id = $1", org.id
        )
        == 1
    )


async def test_a_tenant_changing_its_password_does_not_lock_us_out(
    conn: asyncpg.Connection, db_url: str, org: Org, rows: None
) -> None:
    async with tenant_connection(conn, db_url, org.id) as tenant:
        await tenant.execute("ALTER ROLE CURRENT_USER PASSWORD 'mine-now'")
    async with tenant_connection(conn, db_url, org.id) as tenant:
        assert await tenant.fetchval("SELECT count(*) FROM warehouse.rewards") == 3


async def test_rows_of_a_deleted_organization_stay_invisible(
    conn: asyncpg.Connection, db_url: str, org: Org, other_org: Org, rows: None
) -> None:
    role = await ensure_tenant_role(conn, other_org.id)
    await conn.execute("DELETE FROM organizations WHERE id = $1", other_org.id)  # mapping goes
    tenant = await asyncpg.connect(db_url, user=role.name, password=role.password)
    try:
        assert await tenant.fetchval("SELECT count(*) FROM warehouse.exposures") == 0
    finally:
        await tenant.close()
