"""Process settings, read once from ``LEVERED_*`` environment variables.

One frozen Struct; every field is documented in the README's settings table. Values come from
the environment as strings and msgspec converts them (``"8000"`` → ``8000``), so a bad value
fails at start with a message that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from levered.errors import ConfigurationError

PREFIX = "LEVERED_"

Port = Annotated[int, Meta(ge=0, le=65535)]


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything a server process reads from its environment."""

    database_url: str | None = None
    """An existing PostgreSQL to use; when unset an embedded PostgreSQL is started."""
    data_dir: str | None = None
    """Where the embedded PostgreSQL and the initial credentials live."""
    secret_key: str | None = None
    """Encrypts connected warehouses' passwords at rest; when unset, ``secret.key`` in the data
    directory (created on first use). Every server process must see the same one."""
    chdb_root: str | None = None
    """The directory under which organizations may name ``chdb:///path`` warehouses (the
    ClickHouse engine in this process, on this machine's files); unset: none may."""
    db_port: Port = 0
    """Port of the embedded PostgreSQL on 127.0.0.1; 0 picks a free one."""
    host: str = "127.0.0.1"
    port: Port = 8000
    workers: Annotated[int, Meta(ge=1, le=64)] = 1
    admin_password: str | None = None
    """Password of the first admin user; generated when unset."""
    pool_min_size: Annotated[int, Meta(ge=0)] = 1
    pool_max_size: Annotated[int, Meta(ge=1)] = 10
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    serve_require_key: bool = False
    """Make the serve endpoints require an API key (they are public by default)."""
    serve_rate_limit: Annotated[float, Meta(ge=0)] = 100.0
    """Serve requests per second per client address without an API key; 0 turns it off."""
    serve_rate_burst: Annotated[int, Meta(ge=1)] = 200
    """Serve requests a client address may send at once before the rate applies."""
    train_interval: Annotated[float, Meta(gt=0)] = 60.0
    """How often the training scheduler looks for live optimizations with new matured data."""
    scheduler: bool = True
    """Run the training scheduler in this process (``false``: only ``POST .../train`` trains)."""


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build :class:`Settings` from ``LEVERED_*`` variables, then apply ``overrides``."""
    env = os.environ if environ is None else environ
    names = set(Settings.__struct_fields__)
    raw: dict[str, object] = {}
    for key, value in env.items():
        if key.startswith(PREFIX):
            name = key[len(PREFIX) :].lower()
            if name in names and value != "":
                raw[name] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"invalid setting: {_env_name(str(exc))}") from exc


def _env_name(message: str) -> str:
    """Rewrite msgspec's ``$.port`` paths as the environment variable the user sets."""
    if "`$." in message:
        head, _, field = message.rpartition("`$.")
        field = field.rstrip("`")
        return f"{head}{PREFIX}{field.upper()}"
    return message
