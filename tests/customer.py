"""The customer's PostgreSQL for connected-warehouse tests: a second, real cluster.

Database ``shop``, schema ``analytics`` with ``purchases`` (the rewards) and a view,
``app_exposures`` (the customer's own exposures, for the warehouse-native path) and a view of it
with plainer types, and three
accounts: ``reader`` (USAGE + SELECT: what we ask for), ``writer`` (may also write and create:
taken, with warnings) and ``stranger`` (no grants: refused).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import asyncpg

from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import reachable_tempdir

READER_PASSWORD = "reader-" + secrets.token_hex(8)
PURCHASES_SQL = "SELECT user_id, ts, amount FROM purchases WHERE ts >= @start_date AND NOT refunded"

SETUP = f"""
CREATE SCHEMA analytics;
CREATE TABLE analytics.purchases (
    user_id text, ts timestamptz NOT NULL, amount numeric, refunded boolean DEFAULT false
);
COMMENT ON TABLE analytics.purchases IS 'One row per order';
CREATE VIEW analytics.big_orders AS SELECT * FROM analytics.purchases WHERE amount > 100;
CREATE TABLE public.secret_things (x int);
CREATE ROLE reader LOGIN PASSWORD '{READER_PASSWORD}';
GRANT USAGE ON SCHEMA analytics TO reader;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO reader;
CREATE ROLE writer LOGIN PASSWORD 'writer-pw';
GRANT USAGE, CREATE ON SCHEMA analytics TO writer;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA analytics TO writer;
CREATE ROLE stranger LOGIN PASSWORD 'stranger-pw';
GRANT CONNECT ON DATABASE shop TO stranger;
CREATE TABLE analytics.app_exposures (
    user_id text, optimization uuid, shown jsonb, shown_number integer, context jsonb,
    at timestamptz, holdout boolean
);
CREATE INDEX ON analytics.app_exposures (optimization, user_id, at);
CREATE INDEX ON analytics.app_exposures (optimization, at);
CREATE VIEW analytics.app_exposures_plain AS
    SELECT user_id, optimization::text AS optimization, shown_number, context::text AS context,
           at AT TIME ZONE 'UTC' AS at_utc, holdout
    FROM analytics.app_exposures;
GRANT SELECT ON analytics.app_exposures, analytics.app_exposures_plain TO reader;
"""


@contextmanager
def customer_cluster() -> Iterator[str]:
    """Start the customer's cluster and set it up; its superuser URL of database ``shop``
    (the ``customer`` fixture in tests/conftest.py)."""
    import anyio

    server = EmbeddedPostgres(reachable_tempdir("levered-customer-") / "data", durable=False)
    url = server.start()

    async def setup() -> str:
        admin = await asyncpg.connect(url)
        try:
            await admin.execute("CREATE DATABASE shop")
        finally:
            await admin.close()
        shop_url = url.rsplit("/", 1)[0] + "/shop"
        conn = await asyncpg.connect(shop_url)
        try:
            await conn.execute(SETUP)
        finally:
            await conn.close()
        return shop_url

    try:
        yield anyio.run(setup)
    finally:
        server.stop()


def credentials(customer: str, username: str = "reader", password: str = READER_PASSWORD) -> Any:
    parsed = urlparse(customer)
    return {
        "host": parsed.hostname,
        "port": parsed.port,
        "database": "shop",
        "username": username,
        "password": password,
        "sslmode": "disable",
    }
