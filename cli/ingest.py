"""``levered ingest exposures|rewards FILE``: bulk upload with batches, concurrency, retries.

Input is NDJSON (one event per line) or one JSON array; ``-`` reads stdin. Transient failures
(503, 429, network) are retried with exponential backoff and jitter. Rejected events are written,
with their reasons, to ``--rejected-file`` (default ``FILE.rejected.ndjson``), and the command
exits non-zero (2) when anything was rejected.

Idempotency keys. An event without an ``idempotency_key`` gets one derived from *this upload*
and its position in it: ``sha256(kind, upload, line)``, where the upload is the file's absolute
path (after symlinks) and the SHA-256 of its whole content (stdin: the content alone). So

* re-running the same, unchanged file — after a crash, a timeout, a Ctrl-C — derives the same
  keys and stores nothing twice;
* an event of any other file is never taken for one of this file's, even when it is the same
  JSON on the same line: another path, or this path with other content, is another upload.

Keys are not derived from the event's content alone because an event without a ``timestamp``
has no identity of its own — the server stamps it when it arrives — so two identical such lines
in two files are two real events (a user who signed up twice), and a content key would drop
the second. The price: a file that changed since its first run (appended to, re-exported) or
that moved is a new upload, so its earlier lines would be stored again; send only the new part
(``tail -n +N FILE | levered ingest rewards -``), or give events their own keys. The summary
counts the stored events (not the rejected ones) that had no timestamp, and says so.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec
from cyclopts import App, Parameter

from cli.console import EXIT_USAGE, fail, notice, progress
from cli.flags import ApiUrlFlag, JsonFlag
from cli.output import emit_json
from cli.session import call
from cli.store import KNOWN_KEYS, load_config
from levered.client.api import LeveredAPI
from levered.errors import LeveredError, PermissionDenied, RateLimited, Unavailable
from levered.errors import ValidationError as InvalidBatch

app = App(name="ingest", help="Upload exposure or reward events from a file.")

BATCH_SIZE = 500
MAX_ATTEMPTS = 6


@dataclass
class Tally:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0


def read_source(source: str) -> tuple[bytes, str]:
    """The upload's bytes and its identity: absolute path + content digest (stdin: digest)."""
    if source == "-":
        data, where = sys.stdin.buffer.read(), "-"
    else:
        path = Path(source)
        try:
            data, where = path.read_bytes(), str(path.resolve())
        except OSError as exc:
            fail(f"{source}: {exc.strerror or exc}", EXIT_USAGE)
    digest = hashlib.sha256(data).hexdigest()
    return data, hashlib.sha256(f"{where}\0{digest}".encode()).hexdigest()


def read_events(source: str, data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_index, event)``; a malformed line stops with its line number."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(f"{source}: not UTF-8 text (byte {exc.start})", EXIT_USAGE)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            events = msgspec.json.decode(stripped)
        except msgspec.DecodeError as exc:
            fail(f"{source}: not a valid JSON array: {exc}", EXIT_USAGE)
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                fail(f"{source}: element {index} is not a JSON object", EXIT_USAGE)
            yield index, event
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            fail(f"{source}:{number}: not valid JSON: {exc}", EXIT_USAGE)
        if not isinstance(event, dict):
            fail(f"{source}:{number}: each line must be a JSON object", EXIT_USAGE)
        yield number, event


def with_key(kind: str, upload: str, position: int, event: dict[str, Any]) -> dict[str, Any]:
    """The event with its own key, or one derived from the upload and its position in it."""
    if event.get("idempotency_key") is not None:
        return event
    digest = hashlib.sha256(f"{kind}\0{upload}\0{position}".encode()).hexdigest()[:40]
    return {**event, "idempotency_key": f"cli-{digest}"}


async def send_batch(
    api: LeveredAPI, kind: str, batch: list[tuple[int, dict[str, Any]]], tally: Tally
) -> None:
    body = {"events": [event for _, event in batch]}
    for attempt in range(MAX_ATTEMPTS):
        try:
            result = await api.post(f"/api/v2/ingest/{kind}", body)
        except (Unavailable, RateLimited) as exc:
            if attempt == MAX_ATTEMPTS - 1:
                raise
            delay = max(float(exc.retry_after), min(30.0, 0.5 * 2**attempt))
            await anyio.sleep(delay * (0.5 + random.random()))
            continue
        except InvalidBatch as exc:
            _reject_all(batch, tally, exc, by_path=True)
            return
        except PermissionDenied as exc:
            _reject_all(batch, tally, exc, by_path=False)
            return
        tally.accepted += int(result.get("accepted", 0))
        tally.duplicates += int(result.get("duplicates", 0))
        for item in result.get("rejected", []):
            position, event = batch[item["index"]]
            tally.rejected.append(
                {
                    "position": position,
                    "code": item.get("code"),
                    "message": item.get("message"),
                    "event": event,
                }
            )
        tally.sent += len(batch)
        return


def _reject_all(
    batch: list[tuple[int, dict[str, Any]]], tally: Tally, exc: LeveredError, *, by_path: bool
) -> None:
    reasons: dict[int, str] = {}
    if by_path and isinstance(exc.details, list):
        for detail in exc.details:
            path = str(detail.get("path", "")) if isinstance(detail, dict) else ""
            if path.startswith("$.events["):
                index = int(path[len("$.events[") :].split("]")[0])
                reasons.setdefault(index, f"{path}: {detail.get('message')}")
    for index, (position, event) in enumerate(batch):
        tally.rejected.append(
            {
                "position": position,
                "code": exc.code,
                "message": reasons.get(index, exc.message),
                "event": event,
            }
        )
    tally.sent += len(batch)


def _ingest(
    kind: Literal["exposures", "rewards"],
    file: str,
    concurrency: int | None,
    rejected_file: str | None,
    url: str | None,
    json: bool,
) -> None:
    data, upload = read_source(file)
    events = [(p, with_key(kind, upload, p, e)) for p, e in read_events(file, data)]
    unstamped = sum(1 for _, e in events if e.get("timestamp") is None)
    if not events:
        fail(f"{file}: no events", EXIT_USAGE)
    batches = [events[i : i + BATCH_SIZE] for i in range(0, len(events), BATCH_SIZE)]
    limit = concurrency or int(
        load_config().get("ingest_concurrency", KNOWN_KEYS["ingest_concurrency"].default)
    )
    tally = Tally()
    started = time.monotonic()

    async def run(api: LeveredAPI) -> None:
        semaphore = anyio.Semaphore(max(1, limit))

        async def one(batch: list[tuple[int, dict[str, Any]]]) -> None:
            async with semaphore:
                await send_batch(api, kind, batch, tally)
                progress(tally.sent, len(events), time.monotonic() - started)

        async with anyio.create_task_group() as group:
            for batch in batches:
                group.start_soon(one, batch)

    call(run, url_flag=url)
    elapsed = time.monotonic() - started
    progress(len(events), len(events), elapsed, final=True)
    # Only what was stored carries the server's time: a rejected event carries nothing.
    unstamped -= sum(1 for r in tally.rejected if r["event"].get("timestamp") is None)
    summary: dict[str, Any] = {
        "kind": kind,
        "events": len(events),
        "accepted": tally.accepted,
        "duplicates": tally.duplicates,
        "rejected": len(tally.rejected),
        "without_timestamp": unstamped,
        "seconds": round(elapsed, 3),
    }
    if tally.rejected:
        target = Path(
            rejected_file or (f"{file}.rejected.ndjson" if file != "-" else "rejected.ndjson")
        )
        target.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in tally.rejected))
        summary["rejected_file"] = str(target)
    if unstamped:
        notice(
            f"warning: {unstamped} event(s) had no timestamp: they carry the time the server "
            "received them. A re-run of this same, unchanged file stores nothing twice, but "
            "the same events in another file, or in this one once it changes, are new events."
        )
    if json:
        emit_json(summary)
    else:
        notice(
            f"{kind}: {tally.accepted} accepted, {tally.duplicates} duplicates, "
            f"{len(tally.rejected)} rejected in {elapsed:.1f} s"
            + (
                f"; rejected events and reasons in {summary['rejected_file']}"
                if tally.rejected
                else ""
            )
        )
    if tally.rejected:
        raise SystemExit(EXIT_USAGE)


Concurrency = Annotated[
    int | None, Parameter(help="Concurrent requests (config ingest_concurrency, default 4).")
]
RejectedFile = Annotated[str | None, Parameter(help="Where rejected events and reasons go.")]
# allow_leading_hyphen: so that ``-`` is taken as the file (stdin), not as an unknown option.
Source = Annotated[
    str, Parameter(allow_leading_hyphen=True, help="NDJSON or JSON-array file; - for stdin.")
]


@app.command
def exposures(
    file: Source,
    *,
    concurrency: Concurrency = None,
    rejected_file: RejectedFile = None,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Upload exposures from FILE (NDJSON or a JSON array; - for stdin).

    An event without an idempotency_key gets one derived from this upload (the file's absolute
    path and content; stdin: its content) and its line: re-running the same, unchanged file
    stores nothing twice, and another file's events are never taken for duplicates. Events
    without a timestamp get the time the server receives them; the summary warns about them.
    """
    _ingest("exposures", file, concurrency, rejected_file, api_url_flag, json)


@app.command
def rewards(
    file: Source,
    *,
    concurrency: Concurrency = None,
    rejected_file: RejectedFile = None,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Upload rewards from FILE (NDJSON or a JSON array; - for stdin).

    An event without an idempotency_key gets one derived from this upload (the file's absolute
    path and content; stdin: its content) and its line: re-running the same, unchanged file
    stores nothing twice, and another file's events are never taken for duplicates. Events
    without a timestamp get the time the server receives them; the summary warns about them.
    """
    _ingest("rewards", file, concurrency, rejected_file, api_url_flag, json)
