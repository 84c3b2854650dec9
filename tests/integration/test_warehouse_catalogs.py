"""Tenant SQL cannot read other tenants' metadata from the system catalogs (migration 0011).

As organization A, through the real API (``POST /api/v2/warehouse/query``, the org's sandboxed
login role), with organization B's role logged in and B's events stored: every catalog that
shows other sessions, roles or row counts answers with a permission error (or names nothing of
B), while ordinary metric SQL, previews and the catalog endpoints keep working.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from levered.db.warehouse import ensure_tenant_role, tenant_connection
from tests.conftest import Org
from tests.integration.test_warehouse_api import URL, Client, query, seed

pytestmark = pytest.mark.anyio

# Each reveals other sessions, other roles, or how many rows the shared tables hold.
REFUSED = [
    "SELECT usename, application_name, state FROM pg_stat_activity",
    "SELECT * FROM pg_stat_get_activity(NULL)",
    "SELECT rolname FROM pg_roles",
    "SELECT usename FROM pg_user",
    "SELECT groname FROM pg_group",
    "SELECT roleid, member FROM pg_auth_members",
    "SELECT setrole, setconfig FROM pg_db_role_setting",
    "SELECT relname, n_live_tup FROM pg_stat_all_tables",
    "SELECT relname, n_live_tup FROM pg_stat_user_tables",
    "SELECT relname, heap_blks_read FROM pg_statio_all_tables",
    "SELECT datname, xact_commit, tup_inserted FROM pg_stat_database",
    "SELECT pg_stat_get_live_tuples('warehouse.exposures'::regclass)",
    "SELECT pg_stat_get_tuples_inserted('warehouse.rewards'::regclass)",
    "SELECT reltuples FROM pg_class WHERE relname = 'exposures'",
    "SELECT relpages FROM pg_class WHERE relname = 'rewards'",
    "SELECT * FROM pg_class",
    "SELECT pg_relation_size('warehouse.exposures')",
    "SELECT pg_total_relation_size('warehouse.rewards')",
    "SELECT pg_table_size('warehouse.exposures')",
    "SELECT pg_indexes_size('warehouse.exposures')",
    "SELECT pid, relation FROM pg_locks",
    "SELECT pg_blocking_pids(1)",
    "SELECT attname, most_common_vals::text FROM pg_stats",
    "SELECT gid, owner FROM pg_prepared_xacts",
    "SELECT classid, refobjid FROM pg_shdepend",
    "SELECT pg_current_wal_lsn()",
]


@pytest.fixture
async def other_tenant_busy(conn: asyncpg.Connection, db_url: str, org: Org, other_org: Org) -> Any:
    """B's events stored and analyzed, and B's role logged in (a session A could spy on)."""
    await seed(conn, org, other_org)
    await conn.execute("ANALYZE warehouse.exposures; ANALYZE warehouse.rewards")
    role_b = await ensure_tenant_role(conn, other_org.id)
    async with tenant_connection(conn, db_url, other_org.id) as tenant_b:
        await tenant_b.execute("SELECT 1")
        yield role_b.name


@pytest.mark.parametrize("sql", REFUSED)
async def test_catalogs_of_other_tenants_are_refused(
    client: Client, org: Org, other_tenant_busy: str, sql: str
) -> None:
    response = await query(client, org, sql)
    assert response.status_code == 400, (sql, response.text)
    error = response.json()["error"]
    assert error["details"]["sqlstate"] == "42501", (sql, error)
    assert other_tenant_busy not in response.text


async def test_what_stays_readable_names_nothing_of_other_tenants(
    client: Client, org: Org, other_tenant_busy: str
) -> None:
    # Catalog columns without counts still work (names of the shared tables, their columns).
    response = await query(
        client,
        org,
        "SELECT c.relname, c.relkind, n.nspname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'warehouse' AND c.relkind = 'r' ORDER BY 1",
    )
    assert response.status_code == 200, response.text
    assert [row[0] for row in response.json()["rows"]] == ["exposures", "rewards", "tenant_roles"]
    # Own session only, where it is visible at all.
    response = await query(client, org, "SELECT current_user, session_user")
    assert response.status_code == 200, response.text
    [[current, session]] = response.json()["rows"]
    assert current == session and current.startswith("levered_org_")
    assert other_tenant_busy not in response.text and current != other_tenant_busy


async def test_the_sandbox_still_works(client: Client, org: Org, other_tenant_busy: str) -> None:
    response = await query(
        client,
        org,
        "SELECT anonymous_id, count(*) AS n, max(value) FROM rewards "
        "GROUP BY anonymous_id ORDER BY anonymous_id",
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [["u1", 2, 12.5], ["u2", 1, 1.0]]
    response = await query(
        client, org, "SELECT variant->>'hero', context, \"timestamp\" FROM exposures"
    )
    assert response.status_code == 200, response.text
    assert [row[0] for row in response.json()["rows"]] == ["shield"]
    status = (await client.get(URL, headers=org.headers)).json()
    assert {t["name"]: t["rows"] for t in status["tables"]} == {"exposures": 1, "rewards": 3}
    columns = await client.get(f"{URL}/tables/exposures/columns", headers=org.headers)
    assert columns.status_code == 200, columns.text
    assert "anonymous_id" in [c["name"] for c in columns.json()["columns"]]
    preview = await client.get(f"{URL}/tables/rewards/preview", headers=org.headers)
    assert preview.status_code == 200, preview.text
    assert len(preview.json()["rows"]) == 3
    created = await client.post(
        "/api/v2/metrics",
        json={
            "name": "signups",
            "sql": (
                "SELECT anonymous_id, \"timestamp\" FROM rewards WHERE name = 'signup_completed'"
            ),
            "anonymous_id_col": "anonymous_id",
            "timestamp_col": "timestamp",
            "reward_type": "bool",
        },
        headers=org.headers,
    )
    assert created.status_code == 201, created.text
    metric = created.json()["id"]
    preview = await client.get(f"/api/v2/metrics/{metric}/preview", headers=org.headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["row_count"] == 2
