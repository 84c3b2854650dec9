"""A worker stops when the process that launched it is gone.

``levered server start`` runs the ASGI server's workers as child processes. Killed with
SIGKILL (``kill -9``, the OOM killer), the launcher cannot stop them, and they went on: still
listening on the port, serving variants and spooling exposures with the embedded PostgreSQL
gone, and refusing the next ``levered server start`` the port. So each worker watches its
parent: the launcher exports its pid (:data:`LAUNCHER_PID_ENV`) before it starts the workers,
and a worker whose parent is no longer that process (it was re-parented) shuts down the way a
SIGTERM asks it to — the lifespans' shutdown runs, so the exposure buffer is flushed or spooled
as on any stop. A process that is not such a child (a single-process server, tests' in-process
apps) watches nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

LAUNCHER_PID_ENV: Final = "LEVERED_LAUNCHER_PID"
POLL_S: Final = 1.0
"""How often a worker looks at its parent: a dead launcher's workers are gone within ~1 s."""

log = logging.getLogger("levered.server")


def launcher_pid() -> int | None:
    """The launcher this process is a worker of, or None (not started as such a worker)."""
    given = os.environ.get(LAUNCHER_PID_ENV, "")
    if not given.isdigit() or int(given) == os.getpid() or os.getppid() != int(given):
        return None
    return int(given)


@asynccontextmanager
async def exit_with_launcher(app: Any) -> AsyncIterator[None]:
    launcher = launcher_pid()
    if launcher is None:
        yield
        return
    watch = asyncio.create_task(_watch(launcher), name="levered-orphan-watch")
    try:
        yield
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch


async def _watch(launcher: int) -> None:
    # Polled: Linux can signal a parent's death (PR_SET_PDEATHSIG), but only for the thread
    # that forked, and other systems cannot at all.
    while True:
        await asyncio.sleep(POLL_S)
        if os.getppid() != launcher:
            break
    log.error("the server's launcher (pid %d) is gone: this worker shuts down", launcher)
    os.kill(os.getpid(), signal.SIGTERM)
