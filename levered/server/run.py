"""Run the app under an ASGI server.

Granian is the default: on this project's 2-core machines it answered a trivial endpoint
markedly faster than uvicorn in the same run (figures in ``benchmarks/README.md``, produced by
``python -m benchmarks.asgi_servers``). Workers are separate processes that each call
:func:`levered.server.app.create_app`; they learn the database URL from
``LEVERED_DATABASE_URL``, which the caller exports before starting them.

The event loop is uvloop where it is installed (every platform but Windows): under granian it
served 1.2× the requests per second of asyncio's loop on ``/health`` and 1.2–1.4× on serve
(``python -m benchmarks.asgi_servers``, figures in ``benchmarks/README.md``), mostly because
granian hands each request to the loop with ``call_soon_threadsafe``, which costs asyncio a
self-pipe write every time and uvloop one coalesced wake-up. The loop is named, not left to
granian's ``auto``: ``auto`` prefers rloop when that is installed, and asyncpg cannot connect
on rloop ("TCPTransport protocol cannot be changed").
"""

from __future__ import annotations

import importlib
from typing import Literal

APP_FACTORY = "levered.server.app:create_app"

AsgiServer = Literal["granian", "uvicorn"]
EventLoop = Literal["uvloop", "asyncio"]


def run_asgi(
    host: str,
    port: int,
    workers: int,
    *,
    server: AsgiServer = "granian",
    log_level: str = "info",
    access_log: bool = False,
    loop: EventLoop | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; returns after the workers have shut down. ``loop`` None is
    uvloop where it is installed, else asyncio's own."""
    loop = loop or default_loop()
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            APP_FACTORY,
            factory=True,
            loop=loop,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=access_log,
            lifespan="on",
        )
        return
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    Granian(
        APP_FACTORY,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        loop=Loops(loop),
        workers=workers,
        log_level=LogLevels(log_level),
        log_access=access_log,
        backlog=2048,
    ).serve()


def default_loop() -> EventLoop:
    """uvloop when it imports here, else asyncio's own loop."""
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return "asyncio"
    return "uvloop"
