"""The migration runner on real, empty databases."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import asyncpg
import pytest

from levered.db import migrations
from levered.db.pool import connect
from levered.errors import MigrationError


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT schemaname || '.' || tablename AS t FROM pg_tables "
        "WHERE schemaname IN ('public', 'warehouse')"
    )
    return {r["t"] for r in rows}


async def test_up_down_up_on_an_empty_database(empty_url: str) -> None:
    conn = await connect(empty_url)
    try:
        applied = await migrations.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in migrations.load_migrations()]
        tables = await _tables(conn)
        for expected in (
            "public.organizations",
            "public.users",
            "public.api_keys",
            "public.metrics",
            "public.optimizations",
            "public.model_versions",
            "public.assignments",
            "warehouse.exposures",
            "warehouse.rewards",
        ):
            assert expected in tables
        assert await migrations.is_current(conn)
        assert await migrations.migrate(conn) == []  # idempotent
        comment = await conn.fetchval("SELECT obj_description('organizations'::regclass)")
        assert comment and "Tenants" in comment

        await migrations.rollback(conn, 0)
        assert await _tables(conn) == {"public.schema_migrations"}
        assert not await migrations.is_current(conn)

        await migrations.migrate(conn)
        assert await migrations.is_current(conn)
    finally:
        await conn.close()


async def test_an_edited_applied_migration_is_refused(empty_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(migrations.migrations_dir(), directory)
    conn = await connect(empty_url)
    try:
        await migrations.migrate(conn, directory)
        first = sorted(directory.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- a harmless-looking edit\n")
        with pytest.raises(MigrationError, match="edited after it was applied"):
            await migrations.migrate(conn, directory)
        status = await migrations.status(conn, directory)
        assert status[0].problem == "edited"
        assert not await migrations.is_current(conn, directory)
    finally:
        await conn.close()


async def test_a_missing_applied_file_is_refused(empty_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(migrations.migrations_dir(), directory)
    extra = directory / "9999_extra.sql"
    extra.write_text(
        "-- migrate:up\nCREATE TABLE extra (x int);\n-- migrate:down\nDROP TABLE extra;"
    )
    conn = await connect(empty_url)
    try:
        await migrations.migrate(conn, directory)
        extra.unlink()
        with pytest.raises(MigrationError, match="file is missing"):
            await migrations.migrate(conn, directory)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_half_applied(
    empty_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_good.sql").write_text(
        "-- migrate:up\nCREATE TABLE good (x int);\n-- migrate:down\nDROP TABLE good;"
    )
    (directory / "0002_bad.sql").write_text(
        "-- migrate:up\nCREATE TABLE half (x int);\nSELECT nonsense_function();\n"
        "-- migrate:down\nDROP TABLE half;"
    )
    conn = await connect(empty_url)
    try:
        with pytest.raises(MigrationError, match="0002_bad failed"):
            await migrations.migrate(conn, directory)
        assert await conn.fetchval("SELECT to_regclass('good') IS NOT NULL")
        assert not await conn.fetchval("SELECT to_regclass('half') IS NOT NULL")
        assert [s.version for s in await migrations.status(conn, directory) if s.applied_at] == [1]
    finally:
        await conn.close()


async def test_two_concurrent_runners_apply_each_migration_once(empty_url: str) -> None:
    results: list[list[migrations.Migration]] = []

    async def runner() -> None:
        conn = await connect(empty_url)
        try:
            results.append(await migrations.migrate(conn))
        finally:
            await conn.close()

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(runner)
    total = sum(len(r) for r in results)
    assert total == len(migrations.load_migrations())
    conn = await connect(empty_url)
    try:
        assert await migrations.is_current(conn)
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == total
    finally:
        await conn.close()
