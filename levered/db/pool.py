"""The asyncpg pool and its type codecs.

jsonb uses a *binary* codec (version byte + msgspec JSON): a text codec would break
``copy_records_to_table`` ("no binary format encoder for type jsonb", FACTS.md).
"""

from __future__ import annotations

import asyncpg
import msgspec

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


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=init_connection, command_timeout=60
    )
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    """A single connection with the same codecs (CLI commands, migrations, tests)."""
    conn = await asyncpg.connect(url)
    await init_connection(conn)
    return conn
