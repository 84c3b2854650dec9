"""``levered config list|get|set``: settings in ``~/.levered/config.json``."""

from __future__ import annotations

from cyclopts import App

from cli.console import EXIT_USAGE, fail
from cli.flags import JsonFlag
from cli.output import emit_json, emit_table, emit_text
from cli.store import KNOWN_KEYS, coerce, load_config, save_config

app = App(name="config", help="Read and write CLI settings stored in ~/.levered/config.json.")


def _effective() -> dict[str, object]:
    stored = load_config()
    return {key: stored.get(key, known.default) for key, known in KNOWN_KEYS.items()}


@app.command(name="list")
def list_(*, json: JsonFlag = False) -> None:
    """Print all configuration key-value pairs (defaults included)."""
    values = _effective()
    if json:
        emit_json(values)
    else:
        emit_table(
            ["key", "value", "description"], [[k, v, KNOWN_KEYS[k].help] for k, v in values.items()]
        )


@app.command
def get(key: str, *, json: JsonFlag = False) -> None:
    """Print the value of a specific key."""
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
