"""The dashboard app: wires the API client, the refresh interval and the screens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

import httpx
from textual.app import App
from textual.binding import Binding, BindingType

from levered.client.api import LeveredAPI
from tui.screens.overview import OverviewScreen


class DashboardApp(App[None]):
    """Read-only: it only ever GETs from the API."""

    TITLE = "Levered"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        refresh_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        super().__init__()
        # A lost server shows within the connect timeout; a slow answer (the report document
        # extends the reward's and each guardrail's cells first) is waited for a while longer.
        self.api = LeveredAPI(
            api_url, token, transport=transport, timeout=httpx.Timeout(20.0, connect=2.0)
        )
        self.refresh_seconds = refresh_seconds
        self.clock = clock  # what the status line calls "now" (fixed in snapshot tests)
        self.sub_title = api_url

    def on_mount(self) -> None:
        self.push_screen(OverviewScreen())

    async def on_unmount(self) -> None:
        await self.api.aclose()

    def action_refresh(self) -> None:
        refresh = getattr(self.screen, "refresh_data", None)
        if callable(refresh):
            refresh()
