"""Served exposures that meet a database outage go to a disk spool and reach the database
exactly once when it is back — through a crash of the process in between (its buffer never
closed), a replay of a file whose rows were already stored, and files of a process that died."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from levered.db import migrations
from levered.db import serving as db
from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import reachable_tempdir
from levered.db.pool import connect, create_pool
from levered.services.exposure_buffer import ExposureBuffer
from levered.services.exposure_spool import ExposureSpool

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster() -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of this test alone: it is stopped and started under the buffer."""
    server = EmbeddedPostgres(reachable_tempdir("levered-spool-") / "data", durable=False)
    conn = await connect(server.start())
    try:
        await migrations.migrate(conn)
    finally:
        await conn.close()
    try:
        yield server
    finally:
        server.stop()


def rows(n: int) -> list[db.ExposureRow]:
    org, opt = uuid.uuid4(), uuid.uuid4()
    start = datetime.now(UTC) - timedelta(seconds=n)
    return [
        (
            org,
            opt,
            f"user-{i}",
            {"cta": "Go"},
            1 + i % 2,
            {"device": "ios"},
            start + timedelta(seconds=i),
            0.5,
            uuid.uuid4(),
            None,
            i % 5 == 0,
        )
        for i in range(n)
    ]


async def stored(url: str) -> int:
    conn = await connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM warehouse.exposures"))
    finally:
        await conn.close()


async def test_an_outage_then_a_crash_loses_nothing_and_counts_nothing_twice(
    cluster: EmbeddedPostgres, tmp_path: Path
) -> None:
    spool = ExposureSpool(tmp_path / "spool")
    pool = await create_pool(cluster.url, min_size=0, max_size=2)
    crashed = ExposureBuffer(pool, spool=spool)
    served = rows(250)
    for row in served:
        crashed.add(row)
    cluster.stop()  # the outage
    assert not await crashed.flush()
    assert crashed.pending == 0, "spooled rows leave memory"
    assert crashed.stats.spooled == 250 and len(spool.pending()) == 1
    pool.terminate()  # the process dies here: its buffer is never closed

    url = cluster.start()
    pool = await create_pool(url, min_size=0, max_size=2)
    try:
        after = ExposureBuffer(pool, spool=ExposureSpool(tmp_path / "spool"))
        after.start()
        try:
            assert await after.flush()
            assert await stored(url) == 250
            assert spool.pending() == []
            # Died after writing a file but before deleting it: the replay adds nothing.
            spool.write(served[:100])
            assert await after.flush()
            assert await stored(url) == 250
            assert after.stats.replayed == 250
        finally:
            await after.close()
    finally:
        await pool.close()


async def test_files_of_a_dead_process_are_adopted_and_written(
    cluster: EmbeddedPostgres, tmp_path: Path
) -> None:
    directory = tmp_path / "spool"
    written = ExposureSpool(directory).write(rows(7))
    dead_pid = 4_194_000  # above any pid_max this suite runs under
    written.rename(
        directory / written.name.replace(f"-{written.name.split('-')[1]}-", f"-{dead_pid}-")
    )
    pool = await create_pool(cluster.url, min_size=0, max_size=2)
    try:
        buffer = ExposureBuffer(pool, spool=ExposureSpool(directory))
        buffer.start()
        try:
            assert await buffer.flush()
        finally:
            await buffer.close()
        assert await stored(cluster.url) == 7
        assert list(directory.iterdir()) == []
    finally:
        await pool.close()


async def test_without_a_database_at_shutdown_rows_are_spooled_not_dropped(
    cluster: EmbeddedPostgres, tmp_path: Path
) -> None:
    spool = ExposureSpool(tmp_path / "spool")
    pool = await create_pool(cluster.url, min_size=0, max_size=2)
    buffer = ExposureBuffer(pool, spool=spool)
    for row in rows(3):
        buffer.add(row)
    cluster.stop()
    await buffer.close()
    pool.terminate()
    assert buffer.stats.dropped == 0 and buffer.stats.spooled == 3
    assert len(ExposureSpool.read(spool.pending()[0])) == 3
