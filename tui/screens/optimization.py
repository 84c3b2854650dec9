"""One optimization: model state, traffic over variants, expected reward, factor importance,
holdout comparison and reward over time — whatever the server can tell so far."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Sparkline, Static

from levered.errors import LeveredError, NotFound
from tui.widgets.bars import bar
from tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from tui.app import DashboardApp

TOP_VARIANTS = 15


def describe(o: dict[str, Any]) -> str:
    model = o.get("model") or {}
    metric = o.get("reward_metric") or {}
    window = (o.get("attribution") or {}).get("conversion_window_hours")
    lines = [
        f"[b]{o['name']}[/b]  ({o['status']}, {o['model_type']})",
        f"model: {model.get('status', 'untrained')}, version {model.get('current_version') or '-'}"
        f"  ·  metric: {metric.get('name', '-')} ({metric.get('reward_type', '?')})",
        f"variants: {o.get('variants_count', '-')}  ·  holdout {o.get('holdout_percentage')}%"
        f"  ·  conversion window {window} h",
    ]
    for factor in o.get("design_factors", []):
        lines.append(f"  {factor['name']}: {', '.join(map(str, factor['levels']))}")
    for factor in o.get("context_factors", []):
        lines.append(f"  context {factor['name']}")
    return "\n".join(lines)


def traffic(results: dict[str, Any] | None, width: int = 30) -> str:
    if not results or not results.get("variants"):
        return "Traffic is uniform over the allowed variants until the first training."
    variants = sorted(results["variants"], key=lambda v: -(v.get("weight") or 0))
    lines = []
    for v in variants[:TOP_VARIANTS]:
        er = v.get("expected_reward") or {}
        interval = (
            f"{er.get('mean', 0):.3f} [{er.get('lo', 0):.3f}, {er.get('hi', 0):.3f}]" if er else "-"
        )
        label = " / ".join(map(str, (v.get("variant") or {}).values()))[:40]
        lines.append(
            f"{v['number']:>5} {label:<40} {bar(v.get('weight') or 0, width)} "
            f"{(v.get('weight') or 0):6.1%}  {interval}"
        )
    if len(variants) > TOP_VARIANTS:
        lines.append(f"… showing the top {TOP_VARIANTS} of {len(variants):,} variants by traffic")
    return "\n".join(lines)


def importance(results: dict[str, Any] | None) -> str:
    factors = (results or {}).get("factor_importance") or []
    if not factors:
        return "Factor importance appears after the first training."
    return "\n".join(
        f"{f['name']:<20} {bar(f.get('mean', 0), 20)} {f.get('mean', 0):6.1%} "
        f"(IQR {f.get('q1', 0):.1%}–{f.get('q3', 0):.1%})"
        for f in factors
    )


def holdout(results: dict[str, Any] | None) -> str:
    lift = (results or {}).get("measured_lift")
    if not lift:
        return "No holdout comparison yet."
    ci = lift.get("ci")
    ci_text = (
        f" (95% CI {ci[0]:+.1f}% … {ci[1]:+.1f}%, p={lift.get('p_value'):.3g})"
        if ci
        else " (interval once both arms have ≥ 100 users)"
    )
    return (
        f"optimized {lift.get('optimized_rate', 0):.3%} vs holdout "
        f"{lift.get('holdout_rate', 0):.3%}: lift {lift.get('lift_percent') or 0:+.1f}%{ci_text}"
    )


class OptimizationScreen(Screen[None]):
    CSS_PATH = "optimization.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,backspace", "back", "Back")]

    def __init__(self, optimization_id: str) -> None:
        super().__init__()
        self.optimization_id = optimization_id

    @property
    def dashboard(self) -> DashboardApp:
        return cast("DashboardApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("loading…", id="summary")
            yield Static("Traffic distribution and expected reward", classes="section")
            yield Static("", id="traffic")
            yield Static("Reward rate over time", classes="section")
            yield Sparkline([], id="series")
            yield Static("Factor importance", classes="section")
            yield Static("", id="importance")
            yield Static("Holdout vs optimized", classes="section")
            yield Static("", id="holdout")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_data()
        self.set_interval(self.dashboard.refresh_seconds, self.refresh_data)

    @work(exclusive=True, group="optimization")
    async def refresh_data(self) -> None:
        api = self.dashboard.api
        status = self.query_one(StatusLine)
        try:
            optimization = await api.get(f"/api/v2/optimizations/{self.optimization_id}")
            try:
                results: dict[str, Any] | None = await api.get(
                    f"/api/v2/optimizations/{self.optimization_id}/results"
                )
            except NotFound:
                results = None
        except LeveredError as exc:
            status.fail(exc.message)
            return
        self.title = optimization["name"]
        self.query_one("#summary", Static).update(describe(optimization))
        self.query_one("#traffic", Static).update(traffic(results))
        self.query_one("#importance", Static).update(importance(results))
        self.query_one("#holdout", Static).update(holdout(results))
        series = [float(day.get("rate") or 0) for day in (results or {}).get("time_series", [])]
        self.query_one("#series", Sparkline).data = series or [0.0]
        status.ok()

    def action_back(self) -> None:
        self.app.pop_screen()
