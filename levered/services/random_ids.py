"""Random ids for the serve hot path, many per system call: version-4 decision ids and
time-ordered (version-7) anonymous ids for users who came without one.

``uuid.uuid4()`` reads 16 bytes with ``os.urandom``, and ``os.urandom`` releases the GIL
around its ``getrandom`` call. On a loaded server the event loop then has to win the GIL back
from granian's threads, which queue for it: a py-spy profile of new-user serves put 12 % of
the worker's samples on that one line (the call itself costs 0.3 µs). Reading 4 KiB at a time
makes it one release per 256 ids. The bytes are the same kernel CSPRNG output ``uuid4`` uses,
so decision ids are as unguessable as before; generated anonymous ids keep 74 random bits
after their millisecond timestamp (:func:`time_ordered_hex`).

A forked child must not hand out its parent's buffered bytes (two workers would serve the same
decision ids), so the buffer is emptied after every fork.
"""

from __future__ import annotations

import os
import time
from typing import Final
from uuid import UUID

_BLOCK: Final = 4096
# RFC 9562 version-4 layout: version nibble 0100, variant bits 10.
_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_SET: Final = (0x4000 << 64) | (0x8000 << 48)


class _Buffer:
    __slots__ = ("at", "data")

    def __init__(self) -> None:
        self.data = b""
        self.at = 0

    def take(self) -> bytes:
        at = self.at
        if at + 16 > len(self.data):
            self.data, at = os.urandom(_BLOCK), 0
        self.at = at + 16
        return self.data[at : at + 16]

    def empty(self) -> None:
        self.data, self.at = b"", 0


_buffer: Final = _Buffer()
os.register_at_fork(after_in_child=_buffer.empty)


def random_uuid() -> UUID:
    """A version-4 UUID (what ``uuid.uuid4()`` returns), from the buffered bytes."""
    return UUID(int=(int.from_bytes(_buffer.take()) & _CLEAR) | _SET)


def time_ordered_hex() -> str:
    """A version-7 UUID (RFC 9562) as 32 lowercase hex digits: the Unix time in milliseconds,
    then 74 random bits. For anonymous ids the server generates: ids minted close together
    sort together, so the B-tree indexes they go into (``assignments``' key, the exposures'
    attribution index) grow at their right edge instead of touching a random page each."""
    rand = int.from_bytes(_buffer.take()[:10])  # 80 bits; 74 are used
    value = (
        (time.time_ns() // 1_000_000 << 80)
        | (0x7 << 76)
        | ((rand >> 68) << 64)
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )
    return f"{value:032x}"
