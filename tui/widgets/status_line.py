"""The bottom status line: last refresh time, or why the server cannot be reached."""

from __future__ import annotations

from datetime import datetime

from textual.reactive import reactive
from textual.widgets import Static


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    StatusLine.-error { background: $error 40%; color: $text; }
    """

    problem: reactive[str | None] = reactive(None)
    refreshed_at: reactive[datetime | None] = reactive(None)

    def render(self) -> str:
        if self.problem:
            when = f" (last good refresh {self.refreshed_at:%H:%M:%S})" if self.refreshed_at else ""
            return f"⚠ {self.problem}{when} — retrying"
        if self.refreshed_at is None:
            return "loading…"
        return f"refreshed {self.refreshed_at:%H:%M:%S} · r refresh · q quit"

    def watch_problem(self, problem: str | None) -> None:
        self.set_class(problem is not None, "-error")

    def ok(self, now: datetime | None = None) -> None:
        self.problem = None
        self.refreshed_at = now or datetime.now()

    def fail(self, message: str) -> None:
        self.problem = message
