"""HTTP clients of the Levered API (httpx only: no server or database imports).

:mod:`levered.client.api` is the management client shared by the CLI and the dashboard;
:mod:`levered.client.ingest` is the event SDK (``Ingestor`` for sync code, ``AsyncIngestor``
for asyncio).
"""

from __future__ import annotations

from levered.client.ingest import AsyncIngestor, Ingestor, IngestStats, LeveredClient

__all__ = ["AsyncIngestor", "IngestStats", "Ingestor", "LeveredClient"]
