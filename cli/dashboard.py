"""``levered dashboard``: the live terminal view (Textual is imported only here)."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from cli.flags import ApiUrlFlag
from cli.session import api_url, credentials
from cli.store import KNOWN_KEYS, load_config


def dashboard(
    *,
    refresh: Annotated[
        float | None,
        Parameter(help="Seconds between refreshes (config dashboard_refresh, default 10)."),
    ] = None,
    api_url_flag: ApiUrlFlag = None,
) -> None:
    """Launch a read-only terminal UI with live optimization data."""
    from tui.app import DashboardApp

    url = api_url(api_url_flag)
    token = credentials(url)
    seconds = refresh or float(
        load_config().get("dashboard_refresh", KNOWN_KEYS["dashboard_refresh"].default)
    )
    DashboardApp(url, token, refresh_seconds=max(0.5, seconds)).run()
