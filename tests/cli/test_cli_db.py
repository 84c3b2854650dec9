"""``levered db status|migrate`` on a real, brand-new database: pending, applied, current, and
which database each command looked at."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.cli.conftest import levered


async def test_status_then_migrate_then_current(empty_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERED_")}
    env |= {"LEVERED_DATABASE_URL": empty_url, "LEVERED_CONFIG_DIR": str(tmp_path / "cfg")}

    pending = await levered("db", "status", "--json", env=env)
    assert pending.code == 1, pending.stderr  # every migration is pending
    assert "database: PostgreSQL at LEVERED_DATABASE_URL" in pending.stderr
    assert empty_url not in pending.stderr + pending.stdout  # the URL (a password) is not shown
    rows: Any = pending.json()["migrations"]
    assert rows and all(r["applied_at"] is None for r in rows)

    applied = await levered("db", "migrate", "--json", env=env)
    assert applied.code == 0, applied.stderr
    assert len(applied.json()["applied"]) == len(rows)

    current = await levered("db", "status", env=env)
    assert current.code == 0, current.stderr
    assert "VERSION" in current.stdout and "0001" in current.stdout
    again = await levered("db", "migrate", env=env)
    assert again.code == 0 and "applied 0 migration(s); the schema is current" in again.stderr
