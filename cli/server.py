"""``levered server start``: the database (embedded unless configured), migrations, the API;
``levered server stop``: the same as Ctrl-C in its terminal."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Annotated, Literal

from cyclopts import App, Parameter

from cli.console import EXIT_ERROR, EXIT_USAGE, fail, notice
from cli.flags import JsonFlag
from cli.output import emit_json

app = App(name="server", help="Run the Levered API server.")


@app.command
def start(
    *,
    host: Annotated[str | None, Parameter(help="Address to bind (LEVERED_HOST).")] = None,
    port: Annotated[int | None, Parameter(help="Port to bind (LEVERED_PORT).")] = None,
    workers: Annotated[int | None, Parameter(help="Worker processes (LEVERED_WORKERS).")] = None,
    asgi: Annotated[
        Literal["granian", "uvicorn"], Parameter(help="ASGI server; uvicorn needs the test extra.")
    ] = "granian",
    loop: Annotated[
        Literal["uvloop", "asyncio"] | None,
        Parameter(help="Event loop; default uvloop where installed (all but Windows)."),
    ] = None,
) -> None:
    """Start (or connect to) the database, migrate it, and serve the API until Ctrl-C."""
    import anyio

    from levered.db.database import open_database
    from levered.db.supervisor import Supervisor
    from levered.server.orphan_watch import LAUNCHER_PID_ENV
    from levered.server.port import claim_port
    from levered.server.run import default_loop, run_asgi
    from levered.services.setup import prepare_database
    from levered.settings import load_settings

    if loop == "uvloop" and default_loop() != "uvloop":
        fail(
            "--loop uvloop: uvloop is not installed here (it has no Windows build); "
            "leave --loop out or pass --loop asyncio",
            EXIT_USAGE,
        )
    settings = load_settings(host=host, port=port, workers=workers)
    logging.basicConfig(  # this process's own messages (the supervisor's); workers log alike
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    port_lock = claim_port(settings.host, settings.port)  # held until the process ends
    # Until the ASGI server installs its own handlers, SIGTERM must unwind through `finally`
    # so that the embedded PostgreSQL is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    database = open_database(settings)
    supervisor = (
        Supervisor(database.embedded).start()
        if database.embedded is not None and database.embedded.owned
        else None
    )
    try:
        notice(f"database: {database.describe()}")
        credentials = anyio.run(
            prepare_database, database.url, database.data_dir, settings.admin_password
        )
        if credentials is not None:
            notice(
                "\nFirst start: created an organization, the admin user "
                f"{credentials.email} and an API key.\n"
                f"They are in {credentials.path} (readable only by you); they are not shown "
                "again.\n"
                f"Log in with:  levered login --api-url http://{settings.host}:{settings.port}\n"
                f"or use the API key:  export LEVERED_API_KEY=$(grep ^api_key= "
                f"{credentials.path} | cut -d= -f2)\n"
            )
        os.environ["LEVERED_DATABASE_URL"] = database.url
        os.environ["LEVERED_DATA_DIR"] = str(database.data_dir)  # the workers' exposure spool
        os.environ[LAUNCHER_PID_ENV] = str(os.getpid())  # workers stop if this process dies
        notice(f"serving on http://{settings.host}:{settings.port}  (Ctrl-C stops)")
        run_asgi(
            settings.host,
            settings.port,
            settings.workers,
            server=asgi,
            log_level=settings.log_level,
            loop=loop,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()
        database.close()
        port_lock.close()


STOP_TIMEOUT_S = 60.0


@app.command
def stop(
    *,
    host: Annotated[str | None, Parameter(help="Address it binds (LEVERED_HOST).")] = None,
    port: Annotated[int | None, Parameter(help="Port it binds (LEVERED_PORT).")] = None,
    json: JsonFlag = False,
) -> None:
    """Stop the Levered server on this machine's HOST:PORT, as Ctrl-C would (it finishes the
    requests in flight, flushes served exposures and stops its embedded PostgreSQL)."""
    import time

    from levered.server.port import running_server
    from levered.settings import load_settings

    settings = load_settings(host=host, port=port)
    pid = running_server(settings.host, settings.port)
    if pid is None:
        fail(f"no Levered server is running on {settings.host}:{settings.port}", EXIT_ERROR)
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        fail(f"the server on {settings.host}:{settings.port} (pid {pid}) is gone", EXIT_ERROR)
    except PermissionError:
        fail(f"not allowed to stop pid {pid} (another user's server)", EXIT_ERROR)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while running_server(settings.host, settings.port) == pid:
        if time.monotonic() > deadline:
            fail(f"pid {pid} did not stop within {STOP_TIMEOUT_S:g} s", EXIT_ERROR)
        time.sleep(0.1)
    if json:
        emit_json({"stopped": True, "pid": pid, "host": settings.host, "port": settings.port})
    else:
        notice(f"stopped the server on {settings.host}:{settings.port} (pid {pid})")
