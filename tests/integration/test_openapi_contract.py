"""The OpenAPI document tells the truth: schemathesis runs every check against a real server.

``schemathesis run`` (all operations, all checks, all phases, deterministic) against
``levered server start`` on the test database, authenticated with a real API key of a real
organization. Any failure fails the test, with schemathesis' own report (each failure with a
``curl`` to reproduce it). Run alone::

    python -m pytest tests/integration/test_openapi_contract.py -q -p no:cacheprovider

One expectation is adjusted, per operation, with its reason: ``positive_data_acceptance``
(a request the schema allows must not be a 400) cannot hold where the server validates what no
JSON Schema can state — SQL that must run, ids that must exist, a time bound that moves with
the clock. Those operations document their 400s; nothing else is relaxed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import anyio
import asyncpg
import httpx

from tests.conftest import make_org

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = 25
MIN_CASES = 1000

SEMANTIC_400 = {
    ("POST", "/api/v2/ingest/rewards"): "an event's time must lie between 2000-01-01 and 24 h "
    "after server time (a bound that moves with the clock), and a batch without any valid "
    "event is a 400",
    ("POST", "/api/v2/metrics"): "the metric's SQL is dry-run as the organization",
    ("POST", "/api/v2/warehouse/query"): "the SQL is run as the organization",
    ("PUT", "/api/v2/warehouse"): "a connected warehouse is logged in to and its schema read "
    "before it is stored (a host that answers, a password that works, a readable schema)",
    ("POST", "/api/v2/optimizations"): "reward_metric_id must be one of the organization's "
    "metrics, and the design's rules (distinct levels, exclusions naming real levels…)",
}
"""Operations whose schema-valid requests can be refused with a 400, and why."""

ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
"""schemathesis' default expected statuses for schema-valid requests."""


def config() -> str:
    lines = []
    for (method, path), reason in SEMANTIC_400.items():
        lines += [
            f"# {reason}",
            "[[operations]]",
            f'include-method = "{method}"',
            f'include-path = "{path}"',
            f"checks.positive_data_acceptance.expected-statuses = {json.dumps(['400', *ACCEPTED])}",
            "",
        ]
    return "\n".join(lines)


async def test_the_openapi_document_is_true(
    server_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    org = await make_org(conn, "Contract")
    (tmp_path / "schemathesis.toml").write_text(config())
    report = tmp_path / "report.json"
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert executable, "schemathesis is not installed (pip install -e '.[test]')"
    command = [
        executable,
        "--config-file",
        str(tmp_path / "schemathesis.toml"),
        "run",
        f"{server_url}/schema/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--generation-deterministic",  # the same cases every run (and no example database)
        "--workers",
        "1",
        "--header",
        f"Authorization: Bearer {org.api_key}",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.integration.contract_hooks",
        "LEVERED_CONTRACT_KEY_ID": str(org.api_key_id),
        "PYTHONPATH": str(ROOT),
    }
    run = await anyio.run_process(command, check=False, env=env, cwd=tmp_path)
    output = (run.stdout + run.stderr).decode(errors="replace")
    assert report.exists(), output
    summary = json.loads(report.read_text())

    assert summary["operations"]["tested"] == summary["operations"]["total"], output
    assert summary["test_cases"]["generated"] >= MIN_CASES, output
    assert not summary["failures"] and not summary["errors"], output
    assert run.returncode == 0, output
    async with httpx.AsyncClient(base_url=server_url) as http:  # the run left its key working
        me = await http.get("/api/v2/me", headers=org.headers)
    assert me.status_code == 200, me.text
