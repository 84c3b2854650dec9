"""Served exposures that could not be written, kept on disk until they are.

While the database is unreachable the exposure buffer used to keep unwritten rows in process
memory only ("N rows kept"): a crash or restart during the outage lost them. Now a failed flush
moves its rows to a spool file (written to a temporary name, fsynced, renamed: a file is whole
or absent) and frees the memory; once the database answers again, each file is written with
:func:`levered.db.spooled_exposures.store_spooled` (rows already stored are skipped, so a file
replayed after a crash never double counts) and deleted.

Files are named ``exposures-<pid>-<ns>.msgpack`` in ``<data dir>/spool``; a process replays its
own and, at start, adopts (renames) those of processes that are no longer running, so several
workers never replay one file twice.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import msgspec

from levered.db import serving as db

_ROWS: Final = msgspec.msgpack.Decoder(
    list[
        tuple[
            UUID,
            UUID,
            str,
            dict[str, Any],
            int,
            dict[str, Any],
            datetime,
            float,
            UUID,
            int | None,
            bool,
        ]
    ]
)
_ENCODE: Final = msgspec.msgpack.Encoder().encode
_PREFIX: Final = "exposures-"
_SUFFIX: Final = ".msgpack"


class ExposureSpool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid = os.getpid()

    def write(self, rows: list[db.ExposureRow]) -> Path:
        """Store ``rows`` durably in a new file; raises OSError when the disk refuses."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{_PREFIX}{self.pid}-{time.time_ns()}{_SUFFIX}"
        partial = self.directory / (name + ".partial")
        with partial.open("wb") as out:
            out.write(_ENCODE(rows))
            out.flush()
            os.fsync(out.fileno())
        final = self.directory / name
        partial.rename(final)
        _fsync_directory(self.directory)
        return final

    def pending(self) -> list[Path]:
        """This process's files, oldest first."""
        return sorted(self._files(self.pid))

    def adopt_orphans(self) -> int:
        """Take over the files of processes that are gone; how many were taken."""
        taken = 0
        for path in self._files(None):
            owner = int(path.name[len(_PREFIX) :].split("-", 1)[0])
            if owner == self.pid or _alive(owner):
                continue
            rest = path.name.split("-", 2)[2]
            with contextlib.suppress(FileNotFoundError):  # another worker adopted it first
                path.rename(self.directory / f"{_PREFIX}{self.pid}-{rest}")
                taken += 1
        return taken

    @staticmethod
    def read(path: Path) -> list[db.ExposureRow]:
        return _ROWS.decode(path.read_bytes())

    def _files(self, pid: int | None) -> list[Path]:
        pattern = f"{_PREFIX}{pid if pid is not None else '*'}-*{_SUFFIX}"
        try:
            return list(self.directory.glob(pattern))
        except OSError:
            return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
