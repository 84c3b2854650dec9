"""Run the app under an ASGI server.

Granian is the default: on this project's 2-core machines it answered a trivial endpoint
markedly faster than uvicorn in the same run (figures in ``benchmarks/README.md``, produced by
``python -m benchmarks.asgi_servers``). Workers are separate processes that each call
:func:`levered.server.app.create_app`; they learn the database URL from
``LEVERED_DATABASE_URL``, which the caller exports before starting them.
"""

from __future__ import annotations

from typing import Literal

APP_FACTORY = "levered.server.app:create_app"

AsgiServer = Literal["granian", "uvicorn"]


def run_asgi(
    host: str,
    port: int,
    workers: int,
    *,
    server: AsgiServer = "granian",
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM; returns after the workers have shut down."""
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=access_log,
            lifespan="on",
        )
        return
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    Granian(
        APP_FACTORY,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        log_level=LogLevels(log_level),
        log_access=access_log,
        backlog=2048,
    ).serve()
