"""The only writer of stdout: one JSON document with ``--json``, else readable tables.

Scripts read stdout, so it keeps two promises. With ``--json`` it holds exactly one JSON
document — the result, or on failure ``{"error": {...}}`` (see :func:`emit_error`), never both.
And a reader that goes away early (``levered … | head -1``) is not an error: the rest of the
output is discarded and the process exits with 141, what a process killed by SIGPIPE reports,
as other Unix tools do. (SIGPIPE itself stays ignored, as Python sets it: restoring its default
would also kill the CLI when a *server* connection breaks mid-write, instead of retrying.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

EXIT_PIPE_CLOSED = 141

_state = {"json_errors": False, "emitted": False}


def json_errors(enabled: bool) -> None:
    """Whether a failure prints its JSON error object (set once per run, from ``--json``)."""
    _state["json_errors"] = enabled


def emit_json(document: Any) -> None:
    _write(msgspec.json.format(msgspec.json.encode(document).decode(), indent=2) + "\n")


def emit_error(code: str, message: str, exit_code: int, details: Any = None) -> None:
    """With ``--json``, the one document of a failed run, unless a result was already printed
    (``ingest`` prints its summary, then exits 2 when events were rejected)."""
    if not _state["json_errors"] or _state["emitted"]:
        return
    error: dict[str, Any] = {"code": code, "message": message, "exit_code": exit_code}
    if details is not None:
        error["details"] = details
    emit_json({"error": error})


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    _write("".join(line.rstrip() + "\n" for line in lines))


def emit_text(text: str) -> None:
    _write(text if text.endswith("\n") else text + "\n")


def stdout_closed() -> None:
    """The reader is gone: point stdout at /dev/null (so the flush at exit cannot fail too)
    and end the run quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise SystemExit(EXIT_PIPE_CLOSED)


def _write(text: str) -> None:
    _state["emitted"] = True
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()


def _cell(value: Any) -> str:
    """One table cell. Objects and arrays (jsonb columns, context, Postgres arrays) print as
    compact JSON, which scripts can parse back — not as Python reprs."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list | tuple):
        return msgspec.json.encode(value).decode()
    return str(value)
