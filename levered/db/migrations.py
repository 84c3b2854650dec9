"""A small migration runner for plain SQL files (dbmate's format).

``migrations/NNNN_description.sql`` holds a ``-- migrate:up`` and a ``-- migrate:down`` section.
Each applied version is recorded with the SHA-256 of its file; a changed or vanished applied
file stops the runner, because silently diverging schemas are worse than a failed start. A
session advisory lock serializes concurrent runners (two servers starting at once), and each
migration runs in its own transaction, so a failing one leaves nothing half-applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import asyncpg

from levered.db import Connection
from levered.errors import MigrationError

LOCK_KEY: Final = 0x6C65766572656400  # "levered\0": one advisory lock id for every runner
FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
UP_MARK = "-- migrate:up"
DOWN_MARK = "-- migrate:down"

CREATE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED: Final = "SELECT version, name, checksum, applied_at FROM schema_migrations"
INSERT_APPLIED: Final = (
    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
)
DELETE_APPLIED: Final = "DELETE FROM schema_migrations WHERE version = $1"
TABLE_EXISTS: Final = "SELECT to_regclass('schema_migrations') IS NOT NULL"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str
    checksum: str


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None
    problem: str | None = None  # "edited" or "missing file"


def migrations_dir() -> Path:
    """The packaged copy in a wheel, else the repository's ``migrations/`` folder."""
    packaged = Path(__file__).resolve().parent.parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = FILENAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        text = path.read_text(encoding="utf-8")
        up_at, down_at = text.find(UP_MARK), text.find(DOWN_MARK)
        if up_at < 0 or down_at < up_at:
            raise MigrationError(f"{path.name}: needs '{UP_MARK}' then '{DOWN_MARK}' sections")
        found.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                up=text[up_at + len(UP_MARK) : down_at].strip(),
                down=text[down_at + len(DOWN_MARK) :].strip(),
                checksum=hashlib.sha256(text.encode()).hexdigest(),
            )
        )
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


async def status(conn: Connection, directory: Path | None = None) -> list[MigrationStatus]:
    """Every known version, applied or pending, with any problem found."""
    files = {m.version: m for m in load_migrations(directory)}
    applied = await _applied(conn)
    out: list[MigrationStatus] = []
    for version in sorted(files.keys() | applied.keys()):
        migration, record = files.get(version), applied.get(version)
        if record is None:
            assert migration is not None
            out.append(MigrationStatus(version, migration.name, None))
        elif migration is None:
            out.append(
                MigrationStatus(version, record["name"], record["applied_at"], "missing file")
            )
        else:
            problem = None if record["checksum"] == migration.checksum else "edited"
            out.append(MigrationStatus(version, migration.name, record["applied_at"], problem))
    return out


async def migrate(conn: Connection, directory: Path | None = None) -> list[Migration]:
    """Apply every pending migration in order; returns what was applied."""
    migrations = load_migrations(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(CREATE_TABLE)
        applied = await _applied(conn)
        _refuse_divergence(migrations, applied)
        done: list[Migration] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                try:
                    await conn.execute(migration.up)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                    ) from exc
                await conn.execute(
                    INSERT_APPLIED, migration.version, migration.name, migration.checksum
                )
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def rollback(
    conn: Connection, to_version: int = 0, directory: Path | None = None
) -> list[Migration]:
    """Run the down sections of every applied migration above ``to_version``, newest first."""
    migrations = {m.version: m for m in load_migrations(directory)}
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(CREATE_TABLE)
        applied = await _applied(conn)
        _refuse_divergence(list(migrations.values()), applied)
        undone: list[Migration] = []
        for version in sorted(applied, reverse=True):
            if version <= to_version:
                break
            migration = migrations[version]
            async with conn.transaction():
                await conn.execute(migration.down)
                await conn.execute(DELETE_APPLIED, version)
            undone.append(migration)
        return undone
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def is_current(conn: Connection, directory: Path | None = None) -> bool:
    """True when every migration file is applied unchanged (what ``/ready`` reports)."""
    if not await conn.fetchval(TABLE_EXISTS):
        return False
    return all(
        s.applied_at is not None and s.problem is None for s in await status(conn, directory)
    )


async def _applied(conn: Connection) -> dict[int, asyncpg.Record]:
    if not await conn.fetchval(TABLE_EXISTS):
        return {}
    return {r["version"]: r for r in await conn.fetch(SELECT_APPLIED)}


def _refuse_divergence(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, record in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {version:04d}_{record['name']} is applied but its file is missing; "
                f"this database was migrated by a newer Levered"
            )
        if migration.checksum != record["checksum"]:
            raise MigrationError(
                f"migration {version:04d}_{migration.name} was edited after it was applied "
                f"(checksum differs). Never edit an applied migration: restore the file and add "
                f"a new migration instead"
            )
