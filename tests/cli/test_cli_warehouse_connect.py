"""``levered warehouse connect`` and ``status`` against a second, real PostgreSQL cluster."""

from __future__ import annotations

from urllib.parse import urlparse

import asyncpg

from tests.cli.conftest import levered
from tests.conftest import Org
from tests.customer import READER_PASSWORD


async def test_connect_postgres_status_query_and_back_to_managed(
    cli_env: dict[str, str], org: Org, customer: str, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    parsed = urlparse(customer)
    args = [
        "warehouse",
        "connect",
        "postgres",
        "--host",
        str(parsed.hostname),
        "--port",
        str(parsed.port),
        "--database",
        "shop",
        "--username",
        "reader",
        "--schema",
        "analytics",
        "--sslmode",
        "disable",
    ]
    missing = await levered("warehouse", "connect", "postgres", "--host", "x", env=env)
    assert missing.code == 2 and "--database, --username, --schema" in missing.stderr

    wrong = await levered(*args, "--password-stdin", env=env, stdin="nope\n")
    assert wrong.code != 0 and "could not log in" in wrong.stderr
    assert await conn.fetchval("SELECT count(*) FROM warehouse_connections") == 0

    done = await levered(*args, "--password-stdin", "--json", env=env, stdin=READER_PASSWORD + "\n")
    assert done.code == 0, done.stderr
    assert done.json()["provider"] == "postgres" and READER_PASSWORD not in done.stdout

    status = await levered("warehouse", "status", env=env)
    assert status.code == 0, status.stderr
    assert "connected: reader@" in status.stderr and "schema: analytics" in status.stderr
    assert "purchases" in status.stdout and READER_PASSWORD not in status.stdout + status.stderr

    query = await levered(
        "warehouse", "query", "SELECT count(*) AS n FROM purchases", "--json", env=env
    )
    assert query.code == 0, query.stderr
    assert query.json()["columns"][0]["name"] == "n"

    # The table of the customer's own exposures: checked, shown, cleared.
    mapping = [
        "--anonymous-id", "user_id", "--optimization-id", "optimization", "--variant", "shown",
        "--timestamp", "at", "--holdout", "holdout",
    ]  # fmt: skip
    typo = await levered("warehouse", "exposures", "set", "app_exposure", *mapping, env=env)
    assert typo.code != 0 and "no table or view 'app_exposure'" in typo.stderr
    own = await levered("warehouse", "exposures", "set", "app_exposures", *mapping, env=env)
    assert own.code == 0, own.stderr
    assert "exposures: your table app_exposures (anonymous_id=user_id," in own.stderr
    assert "holdout=holdout" in own.stderr and "context=" not in own.stderr
    stored = await conn.fetchval("SELECT exposures FROM warehouse_connections")
    assert stored["columns"]["variant"] == "shown" and stored["columns"]["context"] is None
    cleared = await levered("warehouse", "exposures", "clear", "--json", env=env)
    assert cleared.code == 0 and cleared.json()["exposures"] is None
    assert "the ones Levered records" in (await levered("warehouse", "status", env=env)).stderr

    back = await levered("warehouse", "connect", "managed", "--json", env=env)
    assert back.code == 0, back.stderr
    assert back.json()["provider"] == "managed"
    assert await conn.fetchval("SELECT count(*) FROM warehouse_connections") == 0
