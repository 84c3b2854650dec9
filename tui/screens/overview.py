"""Every optimization at a glance: status, model, variants, exposures, lift, last trained."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from levered.errors import LeveredError
from tui.widgets.status_line import StatusLine
from tui.widgets.warehouse_line import fetch_warehouse_line

if TYPE_CHECKING:
    from tui.host import Dashboard

COLUMNS = ("name", "status", "model", "variants", "exposures", "lift", "last trained")
SORT_KEYS = ("created", "name", "status", "exposures")


def _lift(summary: dict[str, Any]) -> str:
    """Lift with its 95 % interval; ``~`` marks a modeled (not yet measured) lift."""
    lift, ci = summary.get("lift"), summary.get("lift_ci")
    if not isinstance(lift, (int, float)):
        return "-"
    mark = "" if summary.get("lift_source") == "measured" else "~"
    if ci:
        return f"{mark}{lift:+.1f}% [{ci[0]:+.0f}, {ci[1]:+.0f}]"
    return f"{mark}{lift:+.1f}%"


def _trained(model: dict[str, Any]) -> str:
    if not model.get("trained_at"):
        return "never" if model.get("status") != "failed" else "failed"
    return f"v{model.get('current_version')} {str(model['trained_at'])[:19].replace('T', ' ')}"


def _row(o: dict[str, Any]) -> tuple[str, ...]:
    summary = o.get("summary") or {}
    model = o.get("model") or {}
    return (
        o["name"],
        o["status"],
        o["model_type"],
        str(o.get("variants_count", "-")),
        f"{summary.get('exposures', 0):,}" if summary else "-",
        _lift(summary),
        _trained(model),
    )


class OverviewScreen(Screen[None]):
    CSS_PATH = "overview.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("/", "focus_filter", "Filter"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("a", "toggle_archived", "Archived"),
        Binding("escape", "clear_filter", "Clear", show=False),
    ]

    optimizations: reactive[list[dict[str, Any]]] = reactive(list, always_update=True)
    filter_text: reactive[str] = reactive("")
    sort_key: reactive[str] = reactive("created")
    include_archived: reactive[bool] = reactive(False)

    @property
    def dashboard(self) -> Dashboard:
        return cast("Dashboard", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter by name or status (/)", id="filter")
        yield Static("", id="warehouse")
        yield Static("", id="empty")
        table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_data()
        self.set_interval(self.dashboard.refresh_seconds, self.refresh_data)
        self.query_one(DataTable).focus()

    @work(exclusive=True, group="overview")
    async def refresh_data(self) -> None:
        status = self.query_one(StatusLine)
        try:
            body = await self.dashboard.api.get(
                "/api/v2/optimizations",
                {
                    "limit": 100,
                    "include_archived": self.include_archived,
                },
            )
        except LeveredError as exc:
            status.fail(exc.message)
            return
        self.optimizations = list(body.get("optimizations", []))
        status.ok(self.dashboard.clock())
        warehouse = self.query_one("#warehouse", Static)
        line = await fetch_warehouse_line(self.dashboard.api)
        warehouse.update(line)
        warehouse.display = bool(line)

    def watch_optimizations(self) -> None:
        self._render_rows()

    def watch_filter_text(self) -> None:
        self._render_rows()

    def watch_sort_key(self) -> None:
        self._render_rows()

    def _visible(self) -> list[dict[str, Any]]:
        needle = self.filter_text.lower()
        rows = [
            o for o in self.optimizations if needle in o["name"].lower() or needle in o["status"]
        ]
        if self.sort_key == "name":
            rows.sort(key=lambda o: o["name"].lower())
        elif self.sort_key == "status":
            rows.sort(key=lambda o: o["status"])
        elif self.sort_key == "exposures":
            rows.sort(key=lambda o: -((o.get("summary") or {}).get("exposures") or 0))
        return rows

    def _render_rows(self) -> None:
        if not self.is_mounted:
            return
        table = self.query_one(DataTable)
        selected = table.cursor_row
        table.clear()
        rows = self._visible()
        for o in rows:
            table.add_row(*_row(o), key=o["id"])
        if rows:
            table.move_cursor(row=min(selected, len(rows) - 1))
        empty = self.query_one("#empty", Static)
        empty.update(
            ""
            if rows
            else (
                "No optimizations yet. Create one with `levered optimizations create` "
                "or try `levered demo`."
                if not self.optimizations
                else "Nothing matches the filter."
            )
        )
        empty.display = not rows
        shown = f"{len(rows)} optimization{'' if len(rows) == 1 else 's'}"
        if len(rows) != len(self.optimizations):
            shown += f" of {len(self.optimizations)}"
        self.sub_title = f"{shown} · sorted by {self.sort_key}"

    def on_input_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    def on_input_submitted(self) -> None:
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from tui.screens.optimization import OptimizationScreen

        if event.row_key.value is not None:
            self.app.push_screen(OptimizationScreen(event.row_key.value))

    def action_focus_filter(self) -> None:
        self.query_one(Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one(Input).value = ""
        self.query_one(DataTable).focus()

    def action_cycle_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]

    def action_toggle_archived(self) -> None:
        self.include_archived = not self.include_archived
        self.refresh_data()
