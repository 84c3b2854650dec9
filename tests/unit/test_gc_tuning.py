"""The server's last lifespan step tunes the cyclic GC for request handling (app.py)."""

from __future__ import annotations

import asyncio
import gc

from litestar import Litestar

from levered.server.app import GEN0_THRESHOLD, freeze_startup_heap


def test_startup_heap_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()  # an app started earlier in this process may have set it
    gc.set_threshold(700, 10, 10)  # CPython's default
    try:

        async def run() -> tuple[int, tuple[int, int, int]]:
            async with freeze_startup_heap(Litestar()):
                return gc.get_freeze_count(), gc.get_threshold()

        frozen, threshold = asyncio.run(run())
        assert frozen > 0
        assert threshold == (GEN0_THRESHOLD, 10, 10)
        assert GEN0_THRESHOLD > 700
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
