"""Buffered random ids: valid version-4 UUIDs, no repeats, and no bytes shared across a fork."""

from __future__ import annotations

import os
import time
import uuid

from levered.services import random_ids
from levered.services.random_ids import random_uuid, time_ordered_hex


def test_random_uuids_are_version_4_and_distinct_across_buffer_refills() -> None:
    ids = [random_uuid() for _ in range(3_000)]  # ≈ 12 refills of the 256-id buffer
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in ids)
    assert len(set(ids)) == len(ids)
    # The 122 random bits are used: every hex digit position outside the fixed ones varies.
    for position in (0, 11, 13, 17, 31):
        assert len({u.hex[position] for u in ids}) > 8


def test_time_ordered_ids_are_version_7_carry_the_time_and_sort_by_it() -> None:
    before = time.time_ns() // 1_000_000
    first = [time_ordered_hex() for _ in range(600)]
    time.sleep(0.003)
    later = [time_ordered_hex() for _ in range(600)]
    after = time.time_ns() // 1_000_000
    for value in first + later:
        assert len(value) == 32 and value == value.lower()
        u = uuid.UUID(value)
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= u.int >> 80 <= after  # the 48-bit millisecond timestamp
    assert len(set(first + later)) == 1_200
    assert max(first) < min(later)  # a later millisecond sorts after every earlier id
    # Within one millisecond the 74 random bits still vary (unguessable, not a counter).
    assert len({v[13:] for v in first}) == len(first)


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
