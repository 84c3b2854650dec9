"""Where the CLI keeps its settings and credentials.

``~/.levered/config.json`` holds settings (``LEVERED_CONFIG_DIR`` moves the folder); secrets
live apart in ``credentials.json``, created 0600 so only its owner can read it, keyed by API
URL so one machine can talk to several servers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_API_URL = "http://127.0.0.1:8000"


class KnownKey(msgspec.Struct, frozen=True):
    type: type
    default: Any
    help: str


KNOWN_KEYS: dict[str, KnownKey] = {
    "api_url": KnownKey(str, DEFAULT_API_URL, "Levered server URL used by every command."),
    "dashboard_refresh": KnownKey(float, 10.0, "Seconds between dashboard refreshes."),
    "ingest_concurrency": KnownKey(int, 4, "Concurrent requests of `levered ingest`."),
}


class StoredToken(msgspec.Struct, omit_defaults=True):
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float | None = None  # unix seconds
    api_key: str | None = None

    def access_valid(self, margin_s: float = 30.0) -> bool:
        return bool(
            self.access_token and self.expires_at and self.expires_at > time.time() + margin_s
        )


def config_dir() -> Path:
    return Path(os.environ.get("LEVERED_CONFIG_DIR") or Path.home() / ".levered")


def load_config() -> dict[str, Any]:
    path = config_dir() / "config.json"
    if not path.exists():
        return {}
    try:
        data = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    return data if isinstance(data, dict) else {}


def save_config(config: dict[str, Any]) -> None:
    _write(config_dir() / "config.json", msgspec.json.format(msgspec.json.encode(config)), 0o644)


def coerce(key: str, raw: str) -> Any:
    """Validate a ``config set`` value against the known keys."""
    if key not in KNOWN_KEYS:
        raise KeyError(key)
    kind = KNOWN_KEYS[key].type
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{key} must be a {kind.__name__}, got {raw!r}") from None
    if key == "api_url" and not str(value).startswith(("http://", "https://")):
        raise ValueError("api_url must start with http:// or https://")
    if isinstance(value, (int, float)) and value <= 0:
        raise ValueError(f"{key} must be positive")
    return value


def load_tokens() -> dict[str, StoredToken]:
    path = config_dir() / "credentials.json"
    if not path.exists():
        return {}
    try:
        return msgspec.json.decode(path.read_bytes(), type=dict[str, StoredToken])
    except msgspec.DecodeError:
        return {}


def save_token(api_url: str, token: StoredToken | None) -> None:
    tokens = load_tokens()
    if token is None:
        tokens.pop(api_url, None)
    else:
        tokens[api_url] = token
    _write(
        config_dir() / "credentials.json", msgspec.json.format(msgspec.json.encode(tokens)), 0o600
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data + b"\n")
    os.chmod(tmp, mode)
    os.replace(tmp, path)
