"""The root ``levered`` command: one sub-app per noun, errors mapped to exit codes."""

from __future__ import annotations

import sys

from cyclopts import App

from cli import (
    api_keys,
    auth,
    config,
    dashboard,
    db,
    demo,
    ingest,
    metrics,
    models,
    optimizations,
    serve,
    server,
    warehouse,
)
from cli.console import exit_code_for, fail
from levered import __version__
from levered.errors import LeveredError

app = App(
    name="levered",
    help="Levered: find the best version of a product surface with bandits.",
    version=__version__,
)
app.command(auth.login)
app.command(auth.logout)
app.command(auth.whoami)
app.command(config.app)
app.command(optimizations.app)
app.command(metrics.app)
app.command(models.app)
app.command(warehouse.app)
app.command(api_keys.app)
app.command(ingest.app)
app.command(serve.serve)
app.command(dashboard.dashboard)
app.command(demo.demo)
app.command(server.app)
app.command(db.app)


def main(argv: list[str] | None = None) -> None:
    try:
        app(argv if argv is not None else sys.argv[1:])
    except LeveredError as exc:
        fail(exc.message, exit_code_for(exc.code, exc.status))
    except KeyboardInterrupt:
        fail("interrupted", 130)


if __name__ == "__main__":
    main()
