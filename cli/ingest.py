"""``levered ingest exposures|rewards FILE``: bulk upload with batches, concurrency, retries.

Input is NDJSON (one event per line) or one JSON array; ``-`` reads stdin. Events without an
``idempotency_key`` get one derived from their position and content, so re-running the same
file (after a crash, a timeout, a Ctrl-C) stores nothing twice. Transient failures (503, 429,
network) are retried with exponential backoff and jitter. Rejected events are written, with
their reasons, to ``--rejected-file`` (default ``FILE.rejected.ndjson``), and the command
exits non-zero (2) when anything was rejected.
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


def read_events(source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_index, event)``; a malformed line stops with its line number."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
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


def with_key(kind: str, position: int, event: dict[str, Any]) -> dict[str, Any]:
    if "idempotency_key" in event:
        return event
    digest = hashlib.sha256(msgspec.json.encode([kind, position, event])).hexdigest()[:40]
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
    events = [(p, with_key(kind, p, e)) for p, e in read_events(file)]
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
    summary: dict[str, Any] = {
        "kind": kind,
        "events": len(events),
        "accepted": tally.accepted,
        "duplicates": tally.duplicates,
        "rejected": len(tally.rejected),
        "seconds": round(elapsed, 3),
    }
    if tally.rejected:
        target = Path(
            rejected_file or (f"{file}.rejected.ndjson" if file != "-" else "rejected.ndjson")
        )
        target.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in tally.rejected))
        summary["rejected_file"] = str(target)
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


@app.command
def exposures(
    file: str,
    *,
    concurrency: Concurrency = None,
    rejected_file: RejectedFile = None,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Upload exposures from FILE (NDJSON or a JSON array; - for stdin)."""
    _ingest("exposures", file, concurrency, rejected_file, api_url_flag, json)


@app.command
def rewards(
    file: str,
    *,
    concurrency: Concurrency = None,
    rejected_file: RejectedFile = None,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Upload rewards from FILE (NDJSON or a JSON array; - for stdin)."""
    _ingest("rewards", file, concurrency, rejected_file, api_url_flag, json)
