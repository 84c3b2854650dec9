"""What scripts rely on: a closed pipe ends quietly, ``--json`` errors are one JSON object on
stdout, table cells holding JSON print as JSON."""

from __future__ import annotations

import shlex
import subprocess
import sys
import uuid
from typing import Any

import anyio

from tests.cli.conftest import levered
from tests.cli.test_cli_basics import HERO_FACTORS
from tests.conftest import Org

WIDE_QUERY = "SELECT n, repeat('x', 100) AS pad FROM generate_series(1, 10000) AS n"


def _keyed(env: dict[str, str], org: Org) -> dict[str, str]:
    return env | {"LEVERED_API_KEY": org.api_key}


async def test_output_piped_into_head_ends_quietly(cli_env: dict[str, str], org: Org) -> None:
    # About 1 MB of table: far more than a pipe holds, so `head` closes it mid-write.
    command = shlex.join(
        [sys.executable, "-m", "cli.app", "warehouse", "query", WIDE_QUERY, "-n", "10000"]
    )
    done = await anyio.run_process(
        ["bash", "-c", f"{command} | head -1; exit ${{PIPESTATUS[0]}}"],
        env=_keyed(cli_env, org),
        check=False,
    )
    assert done.stdout.decode().split() == ["N", "PAD"]
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    # 141 (as if killed by SIGPIPE, like other Unix tools) when a write finds the pipe closed;
    # 0 when it closed during the last write, which Python's buffered stdout reports as done.
    assert done.returncode in (0, 141), stderr


def test_a_closed_stdout_is_not_a_traceback(cli_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.app", "config", "list", "--json"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # before the CLI has even started writing
    _, stderr = process.communicate(timeout=60)
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr, stderr
    assert process.returncode == 141


def _one_error(result: Any, code: str, exit_code: int) -> dict[str, Any]:
    """stdout is exactly one JSON error object; the human message is on stderr."""
    assert result.code == exit_code, (result.stdout, result.stderr)
    document: dict[str, Any] = result.json()
    assert set(document) == {"error"}
    error: dict[str, Any] = document["error"]
    assert error["code"] == code and error["exit_code"] == exit_code
    assert error["message"] and f"error: {error['message']}" in result.stderr
    return error


async def test_json_errors_are_one_json_object_on_stdout(cli_env: dict[str, str], org: Org) -> None:
    env = _keyed(cli_env, org)
    missing = await levered("optimizations", "show", str(uuid.uuid4()), "--json", env=env)
    _one_error(missing, "not_found", 4)

    bad_flag = await levered(
        "optimizations",
        "create",
        "--name",
        "x",
        "--design-factors",
        "[not json",
        "--reward-metric-id",
        "x",
        "--json",
        env=env,
    )
    assert "--design-factors" in _one_error(bad_flag, "usage_error", 2)["message"]

    invalid = await levered(
        "optimizations",
        "create",
        "--name",
        "x",
        "--design-factors",
        HERO_FACTORS,
        "--reward-metric-id",
        "not-a-uuid",
        "--json",
        env=env,
    )
    error = _one_error(invalid, "validation_error", 2)
    assert error["details"], error  # the API's per-field details are kept

    unparsed = await levered("optimizations", "show", "--json", env=env)
    _one_error(unparsed, "usage_error", 2)

    anonymous = await levered("whoami", "--json", env=cli_env)
    _one_error(anonymous, "unauthorized", 3)

    # An API error inside ingest's concurrent batches is the same error, not a traceback.
    bogus_key = cli_env | {"LEVERED_API_KEY": "lvk_nope_" + "x" * 40}
    ndjson = '{"anonymous_id": "u1", "name": "signup"}\n'
    refused = await levered("ingest", "rewards", "-", "--json", env=bogus_key, stdin=ndjson)
    assert "Traceback" not in refused.stderr
    _one_error(refused, "unauthorized", 3)

    # Without --json: nothing on stdout, the message on stderr, the same exit code.
    plain = await levered("optimizations", "show", str(uuid.uuid4()), env=env)
    assert (plain.code, plain.stdout) == (4, "") and plain.stderr.startswith("error: ")


async def test_json_cells_print_as_json(cli_env: dict[str, str], org: Org) -> None:
    sql = """SELECT '{"a": "b", "n": [1, 2]}'::jsonb AS doc, ARRAY['x', 'y'] AS tags"""
    result = await levered("warehouse", "query", sql, env=_keyed(cli_env, org))
    assert result.code == 0, result.stderr
    row = result.stdout.splitlines()[1]
    assert '{"a":"b","n":[1,2]}' in row and '["x","y"]' in row, row
    assert "'" not in row
