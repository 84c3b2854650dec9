"""The root ``levered`` command: one sub-app per noun, errors mapped to exit codes.

Every error — a bad flag (cyclopts), an API error, one the CLI finds itself — leaves through
``cli.console.fail``, so it looks the same on stderr and, with ``--json``, is one JSON object on
stdout.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from cyclopts import App, CycloptsError
from cyclopts.exceptions import MissingArgumentError

from cli import (
    analysis,
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
    orgs,
    serve,
    server,
    users,
    warehouse,
)
from cli.console import EXIT_USAGE, exit_code_for, fail
from cli.output import json_errors, stdout_closed
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
analysis.register(optimizations.app)
app.command(optimizations.app)
app.command(metrics.app)
app.command(models.app)
app.command(warehouse.app)
app.command(api_keys.app)
app.command(orgs.app)
app.command(users.app)
app.command(ingest.app)
app.command(serve.serve)
app.command(dashboard.dashboard)
app.command(demo.demo)
app.command(server.app)
app.command(db.app)


def main(argv: list[str] | None = None) -> None:
    tokens = argv if argv is not None else sys.argv[1:]
    # Known before parsing, so that a flag cyclopts refuses is a JSON error too. ``--json``
    # takes no value, so the token is always the flag (``--`` ends the options).
    json_errors("--json" in tokens[: tokens.index("--")] if "--" in tokens else "--json" in tokens)
    try:
        app(tokens, print_error=False, exit_on_error=False)
    except CycloptsError as exc:
        fail(_usage_message(exc), EXIT_USAGE)
    except LeveredError as exc:
        _fail_with(exc)
    except BaseExceptionGroup as group:  # from concurrent requests (ingest's batches)
        error = _domain_error(group)
        if error is None:
            raise
        _fail_with(error)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        stdout_closed()  # output cyclopts printed itself (help, version)


def _usage_message(exc: CycloptsError) -> str:
    """cyclopts' message, except for a required option that was not given at all, which it
    words as if the option had been given without its value ("requires an argument")."""
    argument = exc.argument
    if (
        isinstance(exc, MissingArgumentError)
        and argument is not None
        and exc.keyword is None
        and not exc.tokens_so_far
        and not argument.tokens
    ):
        command = " ".join(exc.command_chain or ())
        name = argument.name
        if argument.field_info.is_positional:  # written as its placeholder, as in --help
            name = name.lstrip("-").replace("-", "_").upper()
        help_text = (argument.parameter.help or "").rstrip(".")
        return f"{command} needs {name}" + (f" ({help_text})" if help_text else "")
    return str(exc)


def _fail_with(exc: LeveredError) -> NoReturn:
    fail(exc.message, exit_code_for(exc.code, exc.status), error_code=exc.code, details=exc.details)


def _domain_error(exc: BaseException) -> LeveredError | None:
    """The first Levered error in a (nested) exception group, the one worth reporting."""
    if isinstance(exc, LeveredError):
        return exc
    for inner in exc.exceptions if isinstance(exc, BaseExceptionGroup) else ():
        if (found := _domain_error(inner)) is not None:
            return found
    return None


if __name__ == "__main__":
    main()
