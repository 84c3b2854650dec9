"""What a screen needs from the app that hosts it, as a Protocol.

Screens type ``self.app`` as this instead of importing ``tui.app.DashboardApp``: the app imports
the screens, so a screen importing the app (even under ``TYPE_CHECKING``) was an import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from levered.client.api import LeveredAPI


class Dashboard(Protocol):
    api: LeveredAPI
    refresh_seconds: float
    clock: Callable[[], datetime]
