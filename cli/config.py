"""``levered config list|get|set``: settings in ``~/.levered/config.json``."""

from __future__ import annotations

import os

from cyclopts import App

from cli.console import EXIT_USAGE, fail
from cli.flags import JsonFlag
from cli.output import emit_json, emit_table, emit_text
from cli.store import KNOWN_KEYS, coerce, load_config, save_config

app = App(name="config", help="Read and write CLI settings stored in ~/.levered/config.json.")


# Environment variables that win over the file (cli/session.py reads the same ones): showing
# the file's value while the environment overrides it told users a URL the CLI was not using.
ENV_OVERRIDES: dict[str, str] = {"api_url": "LEVERED_API_URL"}


def _sourced() -> dict[str, tuple[object, str]]:
    """Each key's effective value and where it comes from: the env variable, file or default."""
    stored = load_config()
    out: dict[str, tuple[object, str]] = {}
    for key, known in KNOWN_KEYS.items():
        env = ENV_OVERRIDES.get(key)
        if env and os.environ.get(env):
            out[key] = (coerce(key, os.environ[env]), f"env {env}")
        elif key in stored:
            out[key] = (stored[key], "file")
        else:
            out[key] = (known.default, "default")
    return out


def _effective() -> dict[str, object]:
    return {key: value for key, (value, _) in _sourced().items()}


@app.command(name="list")
def list_(*, json: JsonFlag = False) -> None:
    """Print each setting's effective value and its source (env override, file or default).

    ``--json`` prints ``{key: effective value}``; the sources are in the table.
    """
    sourced = _sourced()
    if json:
        emit_json({key: value for key, (value, _) in sourced.items()})
    else:
        emit_table(
            ["key", "value", "source", "description"],
            [[k, v, src, KNOWN_KEYS[k].help] for k, (v, src) in sourced.items()],
        )


@app.command
def get(key: str, *, json: JsonFlag = False) -> None:
    """Print the effective value of a specific key (an env override wins over the file)."""
    if key not in KNOWN_KEYS:
        fail(f"unknown key {key!r}; known keys: {', '.join(KNOWN_KEYS)}", EXIT_USAGE)
    value = _effective()[key]
    if json:
        emit_json({key: value})
    else:
        emit_text(str(value))


@app.command(name="set")
def set_(key: str, value: str, *, json: JsonFlag = False) -> None:
    """Set a configuration value."""
    try:
        typed = coerce(key, value)
    except KeyError:
        fail(f"unknown key {key!r}; known keys: {', '.join(KNOWN_KEYS)}", EXIT_USAGE)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    config = load_config()
    config[key] = typed
    save_config(config)
    if json:
        emit_json({key: typed})
