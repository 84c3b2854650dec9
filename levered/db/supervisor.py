"""Keep the embedded PostgreSQL running under the server that started it.

Before this, a PostgreSQL that stopped under a running server (killed, ``pg_ctl stop``, an
out-of-memory kill) was never started again: ``/ready`` stayed 503 for ever. The supervisor
is a thread of ``levered server start``'s main process (the ASGI server's workers are other
processes): it checks every :data:`CHECK_S` whether the PostgreSQL it started has exited and
starts it again on the same port, waiting :data:`BACKOFF_S` doubling up to :data:`MAX_BACKOFF_S`
between failed attempts (a crashed cluster can refuse to start until its old backends are
gone). The workers' pools and listeners reconnect by themselves once it accepts connections.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from levered.db.embedded import EmbeddedPostgres

log = logging.getLogger("levered.database")

CHECK_S: Final = 0.5
BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 30.0


class Supervisor:
    def __init__(self, embedded: EmbeddedPostgres) -> None:
        self.embedded = embedded
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="levered-pg-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop supervising (before the server stops PostgreSQL itself on shutdown)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        backoff = BACKOFF_S
        while not self._stopping.wait(CHECK_S):
            code = self.embedded.exit_code()
            if code is None:
                continue
            log.warning("embedded PostgreSQL exited (status %s); starting it again", code)
            while not self._stopping.is_set():
                try:
                    self.embedded.restart()
                except Exception as exc:  # keep trying: the server is useless without it
                    log.error("restarting PostgreSQL failed (%s); next try in %.1f s", exc, backoff)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                self.restarts += 1
                backoff = BACKOFF_S
                log.warning("embedded PostgreSQL is running again on port %s", self.embedded.port)
                break
