"""The dependency direction (README "Layout"), checked in fresh interpreters via ``sys.modules``."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY_FOR_CLI = ("litestar", "asyncpg", "numba", "textual", "granian")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize("heavy", HEAVY_FOR_CLI)
def test_cli_imports_no_heavy_framework(heavy: str) -> None:
    assert heavy not in _loaded_after("import cli.app")


def test_bandit_never_imports_the_edges() -> None:
    loaded = _loaded_after("import levered.bandit.variants")
    assert not loaded & {"asyncpg", "litestar", "httpx", "cyclopts", "textual"}


def test_schemas_and_errors_are_leaf_modules() -> None:
    loaded = _loaded_after("import levered.schemas.common, levered.errors")
    assert not loaded & {"asyncpg", "litestar", "numba", "numpy", "httpx"}


def test_levered_help_is_fast_to_import() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli.app", "--help"], capture_output=True, text=True, check=True
    )
    assert "server" in out.stdout


def test_a_management_command_stays_light() -> None:
    """`levered optimizations list --json` (here against a closed port) loads no heavy stack."""
    code = (
        "import sys, os\n"
        "os.environ['LEVERED_API_URL'] = 'http://127.0.0.1:9'\n"
        "os.environ['LEVERED_API_KEY'] = 'lvk_aaaaaaaa_x'\n"
        "from cli.app import main\n"
        "try:\n    main(['optimizations', 'list', '--json'])\nexcept SystemExit as e:\n"
        "    code = e.code\n"
        "print('--- exit code, modules')\nprint(code)\nprint('\\n'.join(sorted(sys.modules)))"
    )
    stdout = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    error, _, report = stdout.partition("--- exit code, modules\n")
    out = report.split()
    assert out[0] == "6"  # unavailable: the command really ran
    assert '"unavailable"' in error  # and printed its --json error
    loaded = {name.split(".")[0] for name in out[1:]}
    assert not loaded & {"numba", "asyncpg", "textual", "litestar", "numpy"}
