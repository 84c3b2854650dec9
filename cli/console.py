"""The only writer of stderr: progress, notices, errors, and the exit-code map.

Exit codes (documented in the README):
0 success · 1 other error · 2 usage · 3 authentication · 4 not found · 5 conflict ·
6 server or database unavailable.
"""

from __future__ import annotations

import sys
from typing import NoReturn

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


def notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def confirm(question: str, yes: bool) -> None:
    """Ask before a destructive action; without a terminal and without ``-y``, refuse."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question} — refusing without a terminal; pass -y to confirm", EXIT_USAGE)
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
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
    print(
        f"\r[{bar}] {done}/{total} events  {rate:,.0f} events/s",
        end=end,
        file=sys.stderr,
        flush=True,
    )
