"""``levered ingest``: derived idempotency keys dedup a re-run of the same file and never make an
event of one file a "duplicate" of another file's; events without a timestamp are reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from tests.cli.conftest import levered
from tests.cli.test_cli_basics import HERO_FACTORS
from tests.conftest import Org, make_metric

SIGNUP = {"anonymous_id": "user_123", "name": "signup_completed"}


def _write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in events))
    return path


async def test_another_file_is_never_taken_for_a_duplicate(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    first = _write(tmp_path / "monday.ndjson", [SIGNUP])
    sent = await levered("ingest", "rewards", str(first), "--json", env=env)
    assert sent.code == 0, sent.stderr
    assert (sent.json()["accepted"], sent.json()["duplicates"]) == (1, 0)

    # The same file again (a retry after a crash): nothing new is stored.
    again = await levered("ingest", "rewards", str(first), "--json", env=env)
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1)

    # Another file whose line 1 is the same timestamp-less event: a real, second signup.
    tuesday = _write(tmp_path / "tuesday.ndjson", [SIGNUP])
    other = await levered("ingest", "rewards", str(tuesday), "--json", env=env)
    assert (other.json()["accepted"], other.json()["duplicates"]) == (1, 0), other.stdout
    # The same path rewritten with new content is another file too.
    _write(first, [SIGNUP, {**SIGNUP, "anonymous_id": "user_456"}])
    rewritten = await levered("ingest", "rewards", str(first), "--json", env=env)
    assert (rewritten.json()["accepted"], rewritten.json()["duplicates"]) == (2, 0)
    # A null key is no key: it gets a derived one, so a re-run still stores nothing twice.
    unkeyed = _write(tmp_path / "null-key.ndjson", [{**SIGNUP, "idempotency_key": None}])
    for expected in ((1, 0), (0, 1)):
        run = await levered("ingest", "rewards", str(unkeyed), "--json", env=env)
        assert (run.json()["accepted"], run.json()["duplicates"]) == expected
    assert await conn.fetchval("SELECT count(*) FROM warehouse.rewards") == 5


async def test_events_without_a_timestamp_are_reported(
    cli_env: dict[str, str], org: Org, tmp_path: Path
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    stamped = {**SIGNUP, "anonymous_id": "u2", "timestamp": "2026-11-01T10:00:00Z"}
    events = _write(tmp_path / "mixed.ndjson", [SIGNUP, stamped, {**SIGNUP, "anonymous_id": "u3"}])
    human = await levered("ingest", "rewards", str(events), env=env)
    assert human.code == 0, human.stderr
    assert "2 event(s) had no timestamp" in human.stderr
    assert "time the server received them" in human.stderr
    as_json = await levered("ingest", "rewards", str(events), "--json", env=env)
    assert as_json.json()["without_timestamp"] == 2
    complete = _write(tmp_path / "stamped.ndjson", [stamped])
    quiet = await levered("ingest", "rewards", str(complete), env=env)
    assert "timestamp" not in quiet.stderr
    # A rejected event carries no time at all: it is not counted as stamped by the server.
    rejected = _write(tmp_path / "bad.ndjson", [stamped, {**SIGNUP, "value": "x"}])
    bad = await levered("ingest", "rewards", str(rejected), "--json", env=env)
    assert bad.code != 0 and bad.json()["rejected"] == 1
    assert bad.json()["without_timestamp"] == 0 and "no timestamp" not in bad.stderr


async def test_exposures_from_stdin(
    cli_env: dict[str, str], org: Org, conn: asyncpg.Connection
) -> None:
    env = cli_env | {"LEVERED_API_KEY": org.api_key}
    created = await levered(
        "optimizations",
        "create",
        "--name",
        "Hero",
        "--design-factors",
        HERO_FACTORS,
        "--reward-metric-id",
        str(await make_metric(conn, org)),
        "--json",
        env=env,
    )
    exposure = {
        "anonymous_id": "user_123",
        "optimization_id": created.json()["id"],
        "variant": {"headline": "Ship faster", "cta_text": "Get started"},
        "timestamp": "2026-11-01T10:00:00Z",
    }
    ndjson = msgspec.json.encode(exposure).decode() + "\n"
    piped = await levered("ingest", "exposures", "-", "--json", env=env, stdin=ndjson)
    assert piped.code == 0, piped.stderr
    assert piped.json()["accepted"] == 1
    # The same bytes piped again are the same upload: stored once.
    repiped = await levered("ingest", "exposures", "-", "--json", env=env, stdin=ndjson)
    assert repiped.json()["duplicates"] == 1
    assert await conn.fetchval("SELECT count(*) FROM warehouse.exposures") == 1
