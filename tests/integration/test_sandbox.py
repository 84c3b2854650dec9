"""The query sandbox under attack: every escape attempt fails with a 400 that says why, or
returns only the caller's own rows, and the server keeps serving.

Two layers are tested. Through the API (``POST /api/v2/warehouse/query``), as a user would try.
And directly on a connection logged in as the tenant role, *without* the sandbox's refusal of
statements that return no rows, to show the database itself refuses what matters (``SET ROLE``,
``COPY … TO PROGRAM``, writes, temporary tables, …): the sandbox's checks are not the defense.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db import sandbox
from levered.db.sandbox import Limits
from levered.db.warehouse import ensure_tenant_role
from levered.errors import ValidationError
from tests.conftest import Org

Client = AsyncTestClient[Any]
QUERY = "/api/v2/warehouse/query"
T0 = datetime(2026, 6, 16, 10, 30, tzinfo=UTC)
pytestmark = pytest.mark.anyio

SEED = """
INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, value, "timestamp")
SELECT $1, $2 || g, 'signup_completed', g, $3 FROM generate_series(1, $4) AS g
"""


@pytest.fixture
async def seeded(conn: asyncpg.Connection, org: Org, other_org: Org) -> None:
    """``org`` has 3 rewards (u1…u3); the other organization 5 secret ones (secret1…)."""
    await conn.execute(SEED, org.id, "u", T0, 3)
    await conn.execute(SEED, other_org.id, "secret", T0, 5)
    await conn.execute("ANALYZE warehouse.rewards")  # statistics exist, so pg_stats could leak


async def post(client: Client, org: Org, sql: str, **extra: Any) -> Any:
    return await client.post(QUERY, json={"sql": sql, **extra}, headers=org.headers)


async def refused(client: Client, org: Org, sql: str, *words: str) -> dict[str, Any]:
    """``sql`` gets a 400 whose message contains every one of ``words``; the server is fine."""
    response = await post(client, org, sql)
    assert response.status_code == 400, (sql, response.text)
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    for word in words:
        assert word.lower() in error["message"].lower(), (sql, error)
    await assert_healthy(client, org)
    return error  # type: ignore[no-any-return]


async def assert_healthy(client: Client, org: Org) -> None:
    assert (await client.get("/health")).status_code == 200
    ok = await post(client, org, "SELECT count(*) AS n FROM rewards")
    assert ok.status_code == 200, ok.text


async def own_rows(client: Client, org: Org, sql: str) -> list[list[Any]]:
    response = await post(client, org, sql, limit=10_000)
    assert response.status_code == 200, (sql, response.text)
    rows: list[list[Any]] = response.json()["rows"]
    return rows


# -- writes, DDL, roles ------------------------------------------------------------------------

NOT_QUERIES = [
    'INSERT INTO rewards (organization_id, anonymous_id, name, "timestamp") '
    "VALUES (gen_random_uuid(), 'x', 'y', now())",
    "UPDATE rewards SET value = 0",
    "DELETE FROM rewards",
    "CREATE TABLE warehouse.stolen AS SELECT * FROM rewards",
    "DROP TABLE warehouse.rewards",
    "ALTER TABLE rewards DISABLE ROW LEVEL SECURITY",
    "CREATE TEMP TABLE t (a int)",
    "TRUNCATE rewards",
    "GRANT SELECT ON rewards TO PUBLIC",
    "SET ROLE levered",
    "SET ROLE levered_tenant",
    "RESET ROLE",
    "SET SESSION AUTHORIZATION levered",
    "RESET SESSION AUTHORIZATION",
    "SET search_path = public",
    "ALTER ROLE CURRENT_USER SET statement_timeout = 0",
    "ALTER ROLE CURRENT_USER PASSWORD 'mine'",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "COPY rewards TO '/tmp/leak.csv'",
    "COPY rewards TO STDOUT",
    "CREATE EXTENSION dblink",
    "LOAD 'dblink'",
    "PREPARE p AS SELECT 1",
    "LISTEN everything",
    "VACUUM rewards",
    "DO $$ BEGIN PERFORM 1; END $$",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
]


async def test_statements_that_are_not_queries_never_run(
    client: Client, org: Org, conn: asyncpg.Connection, seeded: None
) -> None:
    for sql in NOT_QUERIES:
        error = await refused(client, org, sql, "only a query that returns rows", "was not run")
        assert error["details"]["reason"] == "not_a_query"
    assert await conn.fetchval("SELECT count(*) FROM warehouse.rewards") == 8


WRITES_RETURNING_ROWS = [
    'INSERT INTO rewards (organization_id, anonymous_id, name, "timestamp") '
    "VALUES (gen_random_uuid(), 'x', 'y', now()) RETURNING *",
    "UPDATE rewards SET value = 0 RETURNING *",
    "DELETE FROM rewards RETURNING *",
    "WITH gone AS (DELETE FROM rewards RETURNING *) SELECT count(*) FROM gone",
    "MERGE INTO rewards r USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE RETURNING r.*",
    "SELECT * FROM rewards FOR UPDATE",
]


async def test_writes_are_refused_by_the_database(
    client: Client, org: Org, conn: asyncpg.Connection, seeded: None
) -> None:
    for sql in WRITES_RETURNING_ROWS:
        error = await refused(client, org, sql, "read-only")
        assert error["details"]["sqlstate"] == "25006", error
    assert await conn.fetchval("SELECT count(*) FROM warehouse.rewards") == 8


async def test_role_and_session_games_through_set_config(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection, seeded: None
) -> None:
    other_role = (await ensure_tenant_role(conn, other_org.id)).name
    for sql in [
        "SELECT set_config('role', 'levered', false)",
        f"SELECT set_config('role', '{other_role}', false)",
        "SELECT set_config('session_authorization', 'levered', false)",
        f"SELECT set_config('session_authorization', '{other_role}', false)",
    ]:
        error = await refused(client, org, sql, "permission denied")
        assert error["details"]["sqlstate"] == "42501"
    # Allowed but useless: the group role, and settings nobody reads for access decisions.
    for sql in [
        "SELECT set_config('role', 'levered_tenant', false), "
        "(SELECT count(*) FROM rewards WHERE anonymous_id LIKE 'secret%')",
        "SELECT set_config('levered.organization_id', "
        f"'{other_org.id}', false), (SELECT count(*) FROM rewards WHERE anonymous_id LIKE 's%')",
        "SELECT set_config('row_security', 'off', false), "
        "(SELECT count(*) FROM rewards WHERE anonymous_id LIKE 'secret%')",
    ]:
        response = await post(client, org, sql)
        if response.status_code == 200:
            assert response.json()["rows"][0][1] == 0, sql
        else:
            assert response.status_code == 400, response.text


# -- the control plane and other organizations -------------------------------------------------


OUTSIDE_THE_WAREHOUSE = [
    ("SELECT * FROM public.api_keys", "42501"),
    ("SELECT * FROM public.users", "42501"),
    ("SELECT * FROM public.organizations", "42501"),
    ("SELECT * FROM public.oauth_tokens", "42501"),
    ("SELECT * FROM public.metrics", "42501"),
    ("SELECT * FROM api_keys", "42P01"),
    ("SELECT * FROM warehouse.tenant_roles", "42501"),
    ("SELECT password FROM warehouse.tenant_roles", "42501"),
    ("SELECT set_config('search_path', 'public', false), (SELECT count(*) FROM users)", "42P01"),
    ("SELECT rolpassword FROM pg_authid", "42501"),
    ("SELECT * FROM pg_shadow", "42501"),
    ("SELECT pg_read_file('/etc/passwd')", "42501"),
    ("SELECT pg_read_file('postgresql.conf')", "42501"),
    ("SELECT pg_ls_dir('.')", "42501"),
    ("SELECT pg_read_binary_file('global/pg_control')", "42501"),
    ("SELECT lo_import('/etc/passwd')", "42501"),
    ("SELECT pg_advisory_lock(1)", "42501"),
    ("SELECT pg_advisory_xact_lock(1819702900, 1)", "42501"),
    ("SELECT pg_try_advisory_lock(1)", "42501"),
    ("SELECT pg_notify('model_versions', 'forged')", "42501"),
    ("SELECT * FROM dblink('dbname=levered', 'SELECT 1') AS t(a int)", "42883"),
    ("SELECT dblink_connect('host=127.0.0.1')", "42883"),
]


async def test_reading_outside_the_warehouse_is_refused(
    client: Client, org: Org, seeded: None
) -> None:
    for sql, sqlstate in OUTSIDE_THE_WAREHOUSE:
        error = await refused(client, org, sql)
        assert error["details"]["sqlstate"] == sqlstate, (sql, error)
        assert error["details"]["server_message"] in error["message"]


async def test_privilege_errors_say_permission_denied(client: Client, org: Org) -> None:
    await refused(client, org, "SELECT * FROM public.api_keys", "permission denied", "public")
    await refused(
        client, org, "SELECT * FROM warehouse.tenant_roles", "permission denied", "tenant_roles"
    )
    await refused(client, org, "SELECT * FROM nowhere", "unknown table", "nowhere")
    await refused(client, org, "SELEC 1", "syntax error")
    await refused(client, org, "SELECT pg_read_file('/etc/passwd')", "permission denied")
    await refused(client, org, "SELECT * FROM dblink('x', 'y') AS t(a int)", "dblink")


TRICKS = [
    "SELECT anonymous_id FROM rewards",
    "TABLE rewards",
    "SELECT anonymous_id FROM ONLY warehouse.rewards",
    "SELECT anonymous_id FROM rewards WHERE organization_id = '{other}'",
    "SELECT anonymous_id FROM rewards WHERE organization_id::text = '{other}'",
    "SELECT anonymous_id FROM rewards WHERE organization_id <> warehouse.tenant_organization()",
    "SELECT anonymous_id FROM rewards WHERE anonymous_id::bytea::text LIKE '%secret%'",
    "WITH everything AS MATERIALIZED (SELECT * FROM rewards) SELECT anonymous_id FROM everything",
    "WITH RECURSIVE r AS (SELECT anonymous_id FROM rewards UNION SELECT anonymous_id FROM r) "
    "SELECT * FROM r",
    "SELECT anonymous_id FROM rewards UNION ALL SELECT anonymous_id FROM warehouse.rewards",
    "SELECT (SELECT string_agg(anonymous_id, ',') FROM rewards) AS anonymous_id",
    "SELECT anonymous_id FROM rewards WHERE 1 / (CASE WHEN anonymous_id LIKE 'secret%' "
    "THEN 0 ELSE 1 END) = 1",
    "SELECT anonymous_id FROM (SELECT * FROM rewards TABLESAMPLE SYSTEM (100)) s",
    "SELECT anonymous_id FROM rewards, LATERAL (SELECT set_config('role', 'levered_tenant', "
    "true)) x",
    "SELECT array_to_string(most_common_vals::text::text[], ',') FROM pg_stats "
    "WHERE tablename = 'rewards'",
    "SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'rewards'",
    "SELECT most_common_vals::text FROM pg_stats_ext",
    "SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT anonymous_id FROM rewards WHERE organization_id IN "
    "(SELECT organization_id FROM rewards)",
    "SELECT current_setting('is_superuser') || warehouse.tenant_organization()::text",
    "SELECT xmin::text || anonymous_id FROM rewards",
]


async def test_tricks_never_show_another_organizations_rows(
    client: Client, org: Org, other_org: Org, seeded: None
) -> None:
    for sql in TRICKS:
        response = await post(client, org, sql.format(other=other_org.id), limit=10_000)
        # A refusal (400) is fine too, as long as nothing leaks.
        assert response.status_code in (200, 400), (sql, response.text)
        assert "secret" not in response.text, (sql, response.text)
        assert str(other_org.id) not in response.text, (sql, response.text)
    await assert_healthy(client, org)


async def test_the_only_organization_visible_is_ones_own(
    client: Client, org: Org, seeded: None
) -> None:
    rows = await own_rows(client, org, "SELECT DISTINCT organization_id FROM rewards")
    assert rows == [[str(org.id)]]
    assert await own_rows(client, org, "SELECT warehouse.tenant_organization()") == [[str(org.id)]]
    assert await own_rows(client, org, "SELECT count(*) FROM rewards") == [[3]]
    assert await own_rows(client, org, "SELECT current_setting('is_superuser')") == [["off"]]


async def test_other_backends_cannot_be_signalled(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    app_pid = await conn.fetchval("SELECT pg_backend_pid()")
    for fn in ("pg_terminate_backend", "pg_cancel_backend"):
        await refused(client, org, f"SELECT {fn}({app_pid})", "permission denied")
    assert await conn.fetchval("SELECT 1") == 1
    # Ending its own connection only ends that query.
    error = await refused(client, org, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert error["details"].get("reason") == "connection_lost" or "sqlstate" in error["details"]


# -- statements, time and size -----------------------------------------------------------------


async def test_several_statements_are_refused(
    client: Client, org: Org, conn: asyncpg.Connection, seeded: None
) -> None:
    for sql in [
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE warehouse.rewards",
        "SELECT * FROM rewards; DELETE FROM rewards",
        "BEGIN; SELECT 1; COMMIT",
        "COMMIT; SET ROLE levered; SELECT * FROM api_keys",
        "SELECT 1;\n-- a comment\nSELECT pg_sleep(10)",
    ]:
        error = await refused(client, org, sql, "only one SQL statement")
        assert error["details"]["sqlstate"] == "42601"
    assert await conn.fetchval("SELECT count(*) FROM warehouse.rewards") == 8


async def test_sleeping_past_the_timeout_is_cancelled(client: Client, org: Org) -> None:
    client.app.state.sandbox_limits = Limits(timeout_s=0.5)
    started = time.perf_counter()
    error = await refused(client, org, "SELECT pg_sleep(30)", "timeout", "0.5 s")
    assert time.perf_counter() - started < 5
    assert error["details"]["sqlstate"] == "57014"
    await refused(client, org, "SELECT count(*) FROM generate_series(1, 1e12::bigint)", "timeout")
    await refused(
        client,
        org,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        "timeout",
    )


@pytest.mark.parametrize(
    "sql",
    ["SELECT generate_series(1, 10000000) AS g", "SELECT g FROM generate_series(1, 10000000) AS g"],
)
async def test_millions_of_rows_are_truncated_fast(client: Client, org: Org, sql: str) -> None:
    started = time.perf_counter()
    response = await post(client, org, sql, limit=10_000)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["truncated"] is True and body["row_count"] == 10_000
    assert body["rows"][:3] == [[1], [2], [3]]
    assert time.perf_counter() - started < 10


async def test_parameters_and_empty_results(client: Client, org: Org) -> None:
    await refused(client, org, "SELECT $1::int", "parameter")
    empty = (await post(client, org, "SELECT * FROM rewards WHERE false")).json()
    assert empty["rows"] == [] and empty["truncated"] is False
    assert [c["name"] for c in empty["columns"]][:2] == ["organization_id", "anonymous_id"]
    assert (await post(client, org, "SELECT 1 AS a;  ")).json()["rows"] == [[1]]
    assert (await post(client, org, "VALUES (1, 'a')")).json()["rows"] == [[1, "a"]]
    shown = (await post(client, org, "SHOW search_path")).json()
    assert shown["rows"] == [["warehouse"]]


# -- the database itself, without the sandbox's statement filter --------------------------------


@pytest.fixture
async def tenant(
    conn: asyncpg.Connection, org: Org, db_url: str, seeded: None
) -> AsyncIterator[asyncpg.Connection]:
    async with sandbox.tenant_session(conn, org.id) as tenant_conn:
        yield tenant_conn


REFUSED_BY_THE_DATABASE = [
    ("SET ROLE levered", "42501"),
    ("SET SESSION AUTHORIZATION levered", "42501"),
    ("COPY (SELECT 1) TO PROGRAM 'id'", "42501"),
    ("COPY warehouse.rewards TO '/tmp/leak.csv'", "42501"),
    ("CREATE TEMP TABLE t (a int)", "42501"),
    ("CREATE TABLE warehouse.t (a int)", "42501"),
    ("CREATE TABLE public.t (a int)", "42501"),
    (
        'INSERT INTO warehouse.rewards (organization_id, anonymous_id, name, "timestamp") '
        "VALUES (gen_random_uuid(), 'x', 'y', now())",
        "42501",
    ),
    ("DELETE FROM warehouse.rewards", "42501"),
    ("CREATE EXTENSION dblink", "42501"),
    ("SET temp_file_limit = '100GB'", "42501"),
    ("ALTER TABLE warehouse.rewards DISABLE ROW LEVEL SECURITY", "42501"),
    ("SELECT pg_advisory_lock(1)", "42501"),
    ("SELECT * FROM warehouse.tenant_roles", "42501"),
]


async def test_the_database_refuses_even_outside_read_only(
    tenant: asyncpg.Connection, conn: asyncpg.Connection
) -> None:
    """No BEGIN READ ONLY, no statement filter: privileges alone refuse all of these."""
    for sql, sqlstate in REFUSED_BY_THE_DATABASE:
        with pytest.raises(asyncpg.PostgresError) as caught:
            await tenant.execute(sql)
        assert caught.value.sqlstate == sqlstate, (sql, caught.value)
    assert await conn.fetchval("SELECT count(*) FROM warehouse.rewards") == 8


async def test_role_changes_keep_the_organization(
    tenant: asyncpg.Connection, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    other_role = (await ensure_tenant_role(conn, other_org.id)).name
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await tenant.execute(f"SET ROLE {other_role}")
    await tenant.execute("SET ROLE levered_tenant")
    assert await tenant.fetchval("SELECT count(*) FROM warehouse.rewards") == 3
    await tenant.execute("RESET ROLE")
    session_user = await tenant.fetchval("SELECT session_user")
    assert session_user.startswith("levered_org_") and session_user != other_role
    assert await tenant.fetchval("SELECT count(*) FROM warehouse.rewards") == 3
    assert await tenant.fetchval("SELECT warehouse.tenant_organization()") == org.id


async def test_role_settings_are_a_backstop(tenant: asyncpg.Connection) -> None:
    assert await tenant.fetchval("SHOW temp_file_limit") == "1GB"
    assert await tenant.fetchval("SHOW search_path") == "warehouse"
    assert await tenant.fetchval("SHOW statement_timeout") == "1min"


async def test_run_refuses_and_reports(tenant: asyncpg.Connection) -> None:
    with pytest.raises(ValidationError) as caught:
        await sandbox.run(tenant, "SELECT * FROM rewards WHERE nope", limit=10)
    assert caught.value.details["sqlstate"] == "42703"
    assert caught.value.details["position"] > 0
    result = await sandbox.run(tenant, "SELECT count(*) AS n FROM rewards", limit=10)
    assert result.rows == [[3]] and result.columns[0].type == "bigint"
    assert not tenant.is_in_transaction()


def test_jsonable_values() -> None:
    from decimal import Decimal

    assert sandbox.jsonable(Decimal("12.50")) == 12.5
    assert sandbox.jsonable(Decimal("3")) == 3
    assert sandbox.jsonable(Decimal("NaN")) == "NaN"
    assert sandbox.jsonable(float("inf")) == "inf"
    assert sandbox.jsonable(UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert sandbox.jsonable(T0) == "2026-06-16T10:30:00+00:00"
    assert sandbox.jsonable({"a": [Decimal("1.5"), None]}) == {"a": [1.5, None]}
    assert sandbox.jsonable(b"\x00\xff") == "\\x00ff"
    assert sandbox.jsonable(asyncpg.Range(1, 5)) == "[1,5)"
    assert sandbox.jsonable(asyncpg.Range(None, 5, upper_inc=True)) == "(,5]"
    assert sandbox.jsonable(asyncpg.Range(empty=True)) == "empty"
    assert sandbox.jsonable(asyncpg.BitString("101")) == "101"
