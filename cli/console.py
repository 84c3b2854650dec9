"""The only writer of stderr: progress, notices, errors, and the exit-code map.

Exit codes (documented in the README):
0 success · 1 other error · 2 usage · 3 authentication · 4 not found · 5 conflict ·
6 server or database unavailable · 130 interrupted · 141 stdout closed by its reader.

Every failure goes through :func:`fail`: the human message here, and with ``--json`` the same
error as one JSON object on stdout (``cli.output``), so a script gets both a code to branch on
and a document to parse.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, NoReturn

from cli.output import emit_error

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_UNAVAILABLE = 6

_BY_CODE_PREFIX = {
    "validation_error": EXIT_USAGE,
    "bad_request": EXIT_USAGE,
    "payload_too_large": EXIT_USAGE,
    "unauthorized": EXIT_AUTH,
    "forbidden": EXIT_AUTH,
    "not_found": EXIT_NOT_FOUND,
    "conflict": EXIT_CONFLICT,
    "not_live": EXIT_CONFLICT,
    "invalid_transition": EXIT_CONFLICT,
    "unavailable": EXIT_UNAVAILABLE,
    "rate_limited": EXIT_UNAVAILABLE,
    "configuration_error": EXIT_ERROR,
    "migration_error": EXIT_ERROR,
}


def exit_code_for(code: str, status: int | None = None) -> int:
    if code in _BY_CODE_PREFIX:
        return _BY_CODE_PREFIX[code]
    if status is not None:
        return {
            400: EXIT_USAGE,
            401: EXIT_AUTH,
            403: EXIT_AUTH,
            404: EXIT_NOT_FOUND,
            409: EXIT_CONFLICT,
            429: EXIT_UNAVAILABLE,
            503: EXIT_UNAVAILABLE,
        }.get(status, EXIT_ERROR)
    return EXIT_ERROR


# The error code of a failure the CLI finds itself (no API error code to pass on).
_CODE_BY_EXIT = {
    EXIT_USAGE: "usage_error",
    EXIT_AUTH: "unauthorized",
    EXIT_NOT_FOUND: "not_found",
    EXIT_CONFLICT: "conflict",
    EXIT_UNAVAILABLE: "unavailable",
    130: "interrupted",
}


def notice(message: str) -> None:
    _say(message)


def fail(
    message: str, code: int = EXIT_ERROR, *, error_code: str | None = None, details: Any = None
) -> NoReturn:
    """Report a failure and exit with ``code``; ``error_code``/``details`` pass an API error on."""
    emit_error(error_code or _CODE_BY_EXIT.get(code, "error"), message, code, details)
    _say(f"error: {message}")
    raise SystemExit(code)


def _say(text: str, end: str = "\n") -> None:
    with contextlib.suppress(BrokenPipeError):  # stderr's reader is gone too: nobody to tell
        print(text, end=end, file=sys.stderr, flush=True)


def confirm(question: str, yes: bool) -> None:
    """Ask before a destructive action; without a terminal and without ``-y``, refuse."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question} — refusing without a terminal; pass -y to confirm", EXIT_USAGE)
    _say(f"{question} [y/N] ", end="")
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        fail("cancelled", EXIT_ERROR)


def progress(done: int, total: int, elapsed_s: float, *, final: bool = False) -> None:
    """A one-line progress bar with events/s, redrawn in place on a terminal."""
    if not sys.stderr.isatty():
        return
    width = 30
    filled = int(width * done / total) if total else width
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    bar = "#" * filled + "-" * (width - filled)
    end = "\n" if final else ""
    _say(f"\r[{bar}] {done}/{total} events  {rate:,.0f} events/s", end=end)
