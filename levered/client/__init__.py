"""HTTP clients of the Levered API (httpx only: no server or database imports).

:mod:`levered.client.api` is the management client shared by the CLI and the dashboard;
:mod:`levered.client.ingest` is the event SDK (``Ingestor`` for sync code, ``AsyncIngestor``
for asyncio).
:mod:`levered.client.serve` is the serving SDK; its one-shot ``serve``/``aserve`` helpers and
clients are re-exported here so ``from levered.client import serve`` gives the function the
README shows (the package attribute ``serve`` is that function, not the submodule; import the
submodule's other names with ``from levered.client.serve import ...``).
"""

from __future__ import annotations

from levered.client.ingest import (
    AsyncIngestor,
    IngestFailure,
    Ingestor,
    IngestStats,
    LeveredClient,
)
from levered.client.serve import AsyncServeClient, ServeClient, Served, aserve, serve

__all__ = [
    "AsyncIngestor",
    "AsyncServeClient",
    "IngestFailure",
    "IngestStats",
    "Ingestor",
    "LeveredClient",
    "ServeClient",
    "Served",
    "aserve",
    "serve",
]
