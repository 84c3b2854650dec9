"""The pool's reset round trip is skipped only after a stateless block that completed."""

from __future__ import annotations

import asyncpg
import pytest

from levered.db.pool import create_pool, stateless


class Boom(Exception):
    pass


async def lock_held(conn: asyncpg.Connection, key: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1", key
        )
    )


async def test_a_failed_block_gets_the_full_reset_and_a_completed_one_skips_it(
    db_url: str, conn: asyncpg.Connection
) -> None:
    pool = await create_pool(db_url, min_size=1, max_size=1)
    try:
        # A block that raised: the advisory lock it left is released by the reset.
        with pytest.raises(Boom):
            async with stateless(pool) as c:
                await c.execute("SELECT pg_advisory_lock(4242)")
                raise Boom
        assert not await lock_held(conn, 4242)
        # A block that completed is trusted to have left nothing: no reset query is sent, so
        # a session setting survives to the next user of the connection (one connection).
        async with stateless(pool) as c:
            await c.execute("SET application_name = 'left-behind'")
        async with pool.acquire() as c:
            assert await c.fetchval("SHOW application_name") == "left-behind"
        # An ordinary acquire resets as before.
        async with pool.acquire() as c:
            await c.execute("SET application_name = 'reset-me'")
        async with pool.acquire() as c:
            assert await c.fetchval("SHOW application_name") != "reset-me"
    finally:
        await pool.close()
