"""Decide which PostgreSQL a process uses: ``LEVERED_DATABASE_URL`` or the embedded one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from levered.db.embedded import EmbeddedPostgres
from levered.db.embedded_host import default_data_dir
from levered.settings import Settings


@dataclass
class Database:
    url: str
    data_dir: Path
    embedded: EmbeddedPostgres | None

    def describe(self) -> str:
        """Which database this is, for the user (no password: the URL is not shown)."""
        if self.embedded is not None:
            return f"embedded PostgreSQL in {self.data_dir}"
        return "PostgreSQL at LEVERED_DATABASE_URL"

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def data_dir_of(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser() if settings.data_dir else default_data_dir()


def open_database(settings: Settings) -> Database:
    """Use the configured server, or start (or reuse) the embedded one."""
    data_dir = data_dir_of(settings)
    if settings.database_url:
        return Database(settings.database_url, data_dir, None)
    embedded = EmbeddedPostgres(data_dir, port=settings.db_port)
    return Database(embedded.start(), data_dir, embedded)
