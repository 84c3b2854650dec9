"""Peaks of one timed phase of a benchmark against the embedded PostgreSQL.

Sampled every 0.2 s while the phase runs: the Python process's RSS, the largest private
(anonymous: not the shared buffers every backend maps) RSS of a PostgreSQL backend, and the
bytes of temporary files on disk (``pgsql_tmp``, plus temporary tables' files, which live in the
database directory); after it, the database's ``pg_stat_database.temp_bytes`` delta (all
temporary-file bytes written, however briefly they existed).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from levered.db.pool import connect, create_pool

TEMP_BYTES = "SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()"


@dataclass
class Phase:
    """One timed phase: seconds and the peaks sampled meanwhile (bytes)."""

    seconds: float = 0.0
    python_rss: int = 0
    backend_rss: int = 0
    tmp_dir: int = 0
    temp_written: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Sampler(threading.Thread):
    """Peaks of the Python RSS, the largest backend's private RSS and ``pgsql_tmp``."""

    def __init__(self, pgdata: Path, phase: Phase) -> None:
        super().__init__(daemon=True)
        self.postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        self.base = pgdata / "base"
        self.phase = phase
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            p = self.phase
            p.python_rss = max(p.python_rss, _status(Path("/proc/self/status"), "VmRSS"))
            p.backend_rss = max(p.backend_rss, self._backends())
            temp_tables = _dir_bytes(self.base, "*/t*_*")  # pass_users, pass_cells
            p.tmp_dir = max(p.tmp_dir, _dir_bytes(self.base, "pgsql_tmp/*") + temp_tables)

    def _backends(self) -> int:
        largest = 0
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and _status(proc / "status", "PPid") == self.postmaster * 1024:
                largest = max(largest, _status(proc / "status", "RssAnon"))
        return largest


def _status(path: Path, key: str) -> int:
    """A field of /proc/<pid>/status (kB fields in bytes; PPid × 1024 too); 0 if gone."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _dir_bytes(path: Path, pattern: str) -> int:
    total = 0
    for f in path.glob(pattern):
        with contextlib.suppress(OSError):  # removed meanwhile
            total += f.stat().st_size
    return total


async def measured(url: str, pgdata: Path, run: Any) -> tuple[Phase, Any]:
    """Run ``run(pool)`` on a fresh pool (closed after it, so its backends' statistics are
    flushed) while sampling; the phase and what ``run`` returned."""
    phase = Phase()
    admin = await connect(url)
    try:
        before = await admin.fetchval(TEMP_BYTES)
        sampler = Sampler(pgdata, phase)
        sampler.start()
        pool = await create_pool(url, min_size=1, max_size=4)
        try:
            started = time.perf_counter()
            result = await run(pool)
            phase.seconds = time.perf_counter() - started
        finally:
            await pool.close()
            sampler.done.set()
            sampler.join()
        await asyncio.sleep(1.0)
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        phase.temp_written = int(await admin.fetchval(TEMP_BYTES)) - int(before)
    finally:
        await admin.close()
    return phase, result
