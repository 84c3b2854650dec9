"""Buffered random ids: valid version-4 UUIDs, no repeats, and no bytes shared across a fork."""

from __future__ import annotations

import os
import uuid

from levered.services import random_ids
from levered.services.random_ids import random_hex, random_uuid


def test_random_uuids_are_version_4_and_distinct_across_buffer_refills() -> None:
    ids = [random_uuid() for _ in range(3_000)]  # ≈ 12 refills of the 256-id buffer
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in ids)
    assert len(set(ids)) == len(ids)
    # The 122 random bits are used: every hex digit position outside the fixed ones varies.
    for position in (0, 11, 13, 17, 31):
        assert len({u.hex[position] for u in ids}) > 8


def test_random_hex_is_32_lowercase_hex_digits() -> None:
    values = [random_hex() for _ in range(600)]
    assert all(len(v) == 32 and int(v, 16) >= 0 and v == v.lower() for v in values)
    assert len(set(values)) == len(values)


def test_a_forked_child_does_not_reuse_the_parents_buffered_bytes() -> None:
    random_uuid()  # the parent now holds a partly used buffer
    upcoming = random_ids._buffer.data[random_ids._buffer.at :]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id's bytes and leave at once
        os.close(read)
        os.write(write, random_uuid().bytes)
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16
    # The parent's next 16 bytes, version bits aside, would have been the child's id.
    assert uuid.UUID(bytes=child).int & random_ids._CLEAR != (
        int.from_bytes(upcoming[:16]) & random_ids._CLEAR
    )
