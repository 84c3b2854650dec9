"""The asyncpg pool and its type codecs.

jsonb uses a *binary* codec (version byte + msgspec JSON): a text codec would break
``copy_records_to_table`` (asyncpg: "no binary format encoder for type jsonb").

Every wait on the pool is bounded (:class:`BoundedPool`): measured with the database frozen
(SIGSTOP), a query cancelled by the caller's timeout left the connection's release waiting for
the cancellation until ``command_timeout`` (60 s), so a request with its own deadline still
hung. ``acquire(timeout=…)`` also bounds that release (asyncpg uses the acquire timeout for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
import msgspec

from levered.errors import Unavailable

DB_WAIT_S: Final = 5.0
"""How long a request waits on the database (a connection, its statements, the release)
before it answers 503 + ``Retry-After``: a healthy statement of the request paths takes
milliseconds, and /ready already reports a database that does not answer within 2 s."""
RETRY_AFTER_S: Final = 2

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _encode_jsonb(value: object) -> bytes:
    return b"\x01" + _encode(value)


def _decode_jsonb(data: bytes) -> object:
    return _decode(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", format="binary", encoder=_encode_jsonb, decoder=_decode_jsonb
    )
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=lambda v: _encode(v).decode(), decoder=_decode
    )


class LeveredConnection(asyncpg.Connection):
    """A pooled connection that can be released without the pool's reset round trip.

    On release asyncpg sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL;`` — one more round trip, with PostgreSQL's work for four statements, after every use.
    Hot paths whose statements leave no session state (an API key lookup, an ingestion batch)
    use :func:`stateless` instead, which skips it; any other use, and a stateless block that
    raised, still gets the full reset. An open transaction is rolled back by asyncpg either way.
    """

    _skip_next_reset = False

    def skip_next_reset(self) -> None:
        self._skip_next_reset = True

    def get_reset_query(self) -> str:
        if self._skip_next_reset:
            self._skip_next_reset = False
            return ""
        return super().get_reset_query()


@asynccontextmanager
async def stateless(pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """A pool connection for statements that leave no session state behind (no session-level
    advisory lock still held, no ``SET``, no ``LISTEN``, no open cursor): released without the
    reset round trip when the block completes (:class:`LeveredConnection`)."""
    async with pool.acquire() as conn:
        yield conn
        # The pool hands out a proxy; a pool of another connection class keeps its reset.
        skip = getattr(conn, "skip_next_reset", None)
        if skip is not None:
            skip()


class BoundedPool(asyncpg.Pool):
    """A pool whose ``acquire`` (and so the release of what it hands out, and ``fetch`` & co.)
    waits at most :data:`DB_WAIT_S` unless the caller names its own timeout."""

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=DB_WAIT_S if timeout is None else timeout)


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connection_class: type[asyncpg.Connection] = LeveredConnection,
) -> asyncpg.Pool:
    pool = BoundedPool(
        url,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        connection_class=connection_class,
        record_class=asyncpg.Record,
        init_size=None,
        loop=None,
        connect=None,
        setup=None,
        init=init_connection,
        reset=None,
        command_timeout=60,
    )
    await pool
    return pool


@asynccontextmanager
async def database_deadline(what: str, seconds: float = DB_WAIT_S) -> AsyncIterator[None]:
    """Bound a request path's database work: past ``seconds`` it is cancelled and the caller
    gets :class:`Unavailable` (503 + ``Retry-After``) instead of waiting for ever on a hung
    database. Use it with :class:`BoundedPool`, whose releases are bounded too."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise deadline_exceeded(what, seconds) from None


def deadline_exceeded(what: str, seconds: float = DB_WAIT_S) -> Unavailable:
    """The 503 of a request whose database work (``what``) outlasted its ``seconds``."""
    return Unavailable(
        f"the database did not answer within {seconds:g} s ({what}); retry shortly",
        retry_after=RETRY_AFTER_S,
        details={"cause": "database_timeout"},
    )


async def connect(url: str) -> asyncpg.Connection:
    """A single connection with the same codecs (CLI commands, migrations, tests)."""
    conn = await asyncpg.connect(url)
    await init_connection(conn)
    return conn
