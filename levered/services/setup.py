"""Bring a database up to date and make sure it has a first organization."""

from __future__ import annotations

from pathlib import Path

from levered.db import migrations
from levered.db.pool import connect
from levered.services.bootstrap import InitialCredentials, bootstrap


async def prepare_database(
    url: str, data_dir: Path, admin_password: str | None
) -> InitialCredentials | None:
    conn = await connect(url)
    try:
        await migrations.migrate(conn)
        return await bootstrap(conn, data_dir, admin_password)
    finally:
        await conn.close()
