"""Migration 0016 on a database that already has organizations and users: nobody loses access
(each user becomes admin of their organization) and the oldest user becomes server admin."""

from __future__ import annotations

import shutil
from pathlib import Path

from levered.db import migrations
from levered.db.pool import connect


async def test_existing_users_become_admins_and_the_first_one_server_admin(
    empty_url: str,
    tmp_path: Path,
) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(migrations.migrations_dir().glob("*.sql")):
        if int(path.name[:4]) < 16:
            shutil.copy(path, before / path.name)
    conn = await connect(empty_url)
    try:
        await migrations.migrate(conn, before)
        acme = await conn.fetchval("INSERT INTO organizations (name) VALUES ('Acme') RETURNING id")
        globex = await conn.fetchval(
            "INSERT INTO organizations (name) VALUES ('Globex') RETURNING id"
        )
        users = []
        for n, org in enumerate([acme, acme, globex]):
            users.append(
                await conn.fetchval(
                    "INSERT INTO users (organization_id, email, password_hash, created_at) "
                    "VALUES ($1, $2, 'x', now() + make_interval(secs => $3)) RETURNING id",
                    org,
                    f"u{n}@example.test",
                    float(n),
                )
            )
        await migrations.migrate(conn)  # the rest, 0016 included
        rows = await conn.fetch(
            "SELECT user_id, organization_id, role FROM memberships ORDER BY created_at"
        )
        assert [(r["user_id"], r["organization_id"], r["role"]) for r in rows] == [
            (users[0], acme, "admin"),
            (users[1], acme, "admin"),
            (users[2], globex, "admin"),
        ]
        admins = await conn.fetch("SELECT id FROM users WHERE is_server_admin")
        assert [r["id"] for r in admins] == [users[0]]
    finally:
        await conn.close()
