from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from levered.services.bootstrap import bootstrap
from levered.services.passwords import verify_password
from levered.services.tokens import api_key_prefix, same_digest


async def test_first_start_creates_one_org_once(conn: asyncpg.Connection, tmp_path: Path) -> None:
    created = await bootstrap(conn, tmp_path, "chosen-password")
    assert created is not None
    assert await conn.fetchval("SELECT count(*) FROM organizations") == 1
    assert os.stat(created.path).st_mode & 0o777 == 0o600
    text = created.path.read_text()
    assert created.api_key in text and "chosen-password" in text

    user = await conn.fetchrow("SELECT password_hash FROM users WHERE email = $1", created.email)
    assert user is not None and verify_password(user["password_hash"], "chosen-password")
    assert not user["password_hash"].count("chosen-password")
    key = await conn.fetchrow(
        "SELECT secret_hash FROM api_keys WHERE prefix = $1", api_key_prefix(created.api_key)
    )
    assert key is not None and same_digest(key["secret_hash"], created.api_key)

    assert await bootstrap(conn, tmp_path, None) is None
    assert await conn.fetchval("SELECT count(*) FROM organizations") == 1


async def test_generated_password_when_none_is_given(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    created = await bootstrap(conn, tmp_path, None)
    assert created is not None and len(created.password) >= 12
