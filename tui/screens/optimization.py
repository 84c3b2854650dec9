"""One optimization: progress to a decision, traffic over variants, expected reward, the
outcome mix of a weighted metric, daily reward-rate and lift charts, guardrails, a breakdown
by a context factor, factor importance, the holdout comparison and model state — whatever the
server can tell so far.

Each refresh asks for the report document (results, guardrails, progress and lift history
computed together, so the panels agree) and, only when a context or a dimension is chosen,
the results for that view as well."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

import msgspec
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from levered.errors import LeveredError, NotFound
from tui.widgets.bars import bar
from tui.widgets.dimensions_panel import DimensionsPanel
from tui.widgets.figures import change, variant_labels
from tui.widgets.guardrails_panel import GuardrailsPanel
from tui.widgets.history_charts import HistoryCharts
from tui.widgets.outcomes_panel import OutcomesPanel
from tui.widgets.progress_panel import ProgressPanel
from tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from tui.host import Dashboard

TOP_VARIANTS = 15


def _hours(hours: float | None) -> str:
    if hours is None:
        return "-"
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:g} h"


def context_choices(o: dict[str, Any], limit: int = 50) -> list[dict[str, Any] | None]:
    """The population, then every combination of the declared context levels (cmab only)."""
    if o.get("model_type") != "cmab":
        return [None]
    combos: list[dict[str, Any]] = [{}]
    for factor in o.get("context_factors", []):
        levels = factor.get("levels") or []
        if levels:
            combos = [c | {factor["name"]: level} for c in combos for level in levels][:limit]
    return [None, *[c for c in combos if c]]


def context_label(context: dict[str, Any] | None) -> str:
    if not context:
        return "all traffic (population)"
    return ", ".join(f"{k}={v}" for k, v in context.items())


def describe(o: dict[str, Any]) -> str:
    model = o.get("model") or {}
    metric = o.get("reward_metric") or {}
    window = (o.get("attribution") or {}).get("conversion_window_hours")
    lines = [
        f"[b]{o['name']}[/b]  ({o['status']}, {o['model_type']})",
        f"model: {model.get('status', 'untrained')}, version {model.get('current_version') or '-'}"
        f"  ·  metric: {metric.get('name', '-')} ({metric.get('reward_type', '?')})",
        f"variants: {o.get('variants_count', '-')}  ·  holdout {o.get('holdout_percentage')}%"
        f"  ·  conversion window {_hours(window)}",
    ]
    for factor in o.get("design_factors", []):
        lines.append(f"  {factor['name']}: {', '.join(map(str, factor['levels']))}")
    for factor in o.get("context_factors", []):
        lines.append(f"  context {factor['name']}")
    return "\n".join(lines)


FIXED_COLUMNS = 55  # number, percentages, counts and the interval around label and bar


def traffic(results: dict[str, Any] | None, screen_width: int = 130) -> str:
    """One line per variant; label and bar shrink with the terminal so lines never wrap."""
    room = max(15, screen_width - FIXED_COLUMNS)
    label_width = max(10, min(40, room * 55 // 100))
    width = max(5, min(30, room - label_width))
    variants = (results or {}).get("variants") or []
    if not variants:
        return "Traffic is uniform over the allowed variants until the first training."
    trained = any(v.get("weight") is not None for v in variants)
    total_allowed = (results or {}).get("variants_total") or len(variants)
    variants = sorted(variants, key=lambda v: -(v.get("weight") or 0))
    lines = (
        []
        if trained
        else ["Untrained: traffic is uniform over the allowed variants until the first training."]
    )
    for v in variants[:TOP_VARIANTS]:
        er = v.get("expected_reward") or {}
        interval = (
            f"{er['mean']:.3f} [{er['lo']:.3f}, {er['hi']:.3f}]"
            if er.get("mean") is not None
            else "-"
        )
        label = " / ".join(map(str, (v.get("variant") or {}).values()))[:label_width]
        weight = (v.get("weight") if trained else 1.0 / total_allowed) or 0.0
        lines.append(
            f"{v['number']:>5} {label:<{label_width}} {bar(weight, width)} {weight:6.1%}  "
            f"{v.get('exposures', 0):>7,} seen  {interval}"
        )
    total = (results or {}).get("variants_total") or len(variants)
    if total > TOP_VARIANTS:
        lines.append(
            f"… showing the top {min(TOP_VARIANTS, len(variants))} of {total:,} variants by traffic"
        )
    return "\n".join(lines)


def importance(results: dict[str, Any] | None) -> str:
    """Design shares and context shares answer different questions, with different
    denominators (docs/statistics.md, "Reading factor importance"): shown as two
    decompositions, each adding up to 100 %, never as one list to be summed."""
    factors = (results or {}).get("factor_importance") or []
    contexts = (results or {}).get("context_importance") or []
    if not factors:
        return "Factor importance appears after the first training."
    lines = ["How variants differ (population), shares adding up to 100 %:"]
    lines += [
        f"  {f['name']:<18} {bar(f.get('mean') or 0, 20)} {f.get('mean') or 0:6.1%} "
        f"(IQR {f.get('q1') or 0:.1%}–{f.get('q3') or 0:.1%})"
        for f in factors
    ]
    inter = (results or {}).get("interaction_importance") or {}
    if inter:
        share = inter.get("mean") or 0
        lines.append(f"  {'interactions':<18} {bar(share, 20)} {share:6.1%}")
    for c in contexts:
        total = c.get("mean") or 0
        value = (c.get("context") or {}).get("mean") or 0
        cross = (c.get("interaction") or {}).get("mean") or 0
        lines.append(
            f"How ({c['name']} value, variant) cells differ, its own 100 %: "
            f"{c['name']} {value:.1%} + {c['name']} × design {cross:.1%} "
            f"+ design alone {max(0.0, 1.0 - total):.1%}"
        )
    return "\n".join(lines)


def holdout(results: dict[str, Any] | None) -> str:
    lift = (results or {}).get("measured_lift")
    if not lift or not (lift.get("optimized_users") or lift.get("holdout_users")):
        return "No holdout comparison yet (no matured users)."
    ci, p_value = lift.get("ci"), lift.get("p_value")
    ci_text = (
        f" (95% CI {ci[0]:+.1f}% … {ci[1]:+.1f}%"
        + ("" if p_value is None else f", p={p_value:.3g}")
        + ")"
        if ci
        else " (interval once both arms have ≥ 100 users)"
    )
    # A rate or lift the server could not compute (an arm without matured users, a holdout
    # rate of 0) is "n/a", never a 0 that reads as a measurement.
    return (
        f"optimized {_rate(lift.get('optimized_rate'))} ({lift.get('optimized_users')} "
        f"users) vs holdout {_rate(lift.get('holdout_rate'))} "
        f"({lift.get('holdout_users')} users): lift {change(lift.get('lift_percent'))}"
        f"{ci_text}"
    )


def _rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.3%}"


def model_state(results: dict[str, Any] | None) -> str:
    model = (results or {}).get("model")
    note = (results or {}).get("note")
    if not model:
        return note or "No model yet."
    trained = str(model.get("trained_at") or "never")[:19]
    text = (
        f"model {model.get('status')}, version {model.get('version') or '-'}, trained "
        f"{trained}, {model.get('pending', 0):,} exposures pending (window still open)"
    )
    through = (results or {}).get("data_through")
    if through and model.get("version"):
        text += f"\ntrains on {window_text((results or {}).get('training_window'))}; "
        text += f"data through {str(through)[:19]}"
    return f"{text}\n{note}" if note else text


def window_text(window: dict[str, Any] | None) -> str:
    """A training window in words."""
    kind = (window or {}).get("type", "all")
    if kind == "days":
        return f"the last {window['days']:g} days" if window else "all history"
    if kind == "decay":
        return f"all history, half-life {window['half_life_days']:g} days" if window else ""
    return "all history"


class OptimizationScreen(Screen[None]):
    CSS_PATH = "optimization.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("c", "next_context", "Context"),
        Binding("d", "next_dimension", "Dimension"),
    ]

    def __init__(self, optimization_id: str) -> None:
        super().__init__()
        self.optimization_id = optimization_id
        self.contexts: list[dict[str, Any] | None] = [None]
        self.context_index = 0
        self.dimensions: list[str] = []
        self.dimension_index = 0
        """Into ``dimensions`` followed by "off": the first context factor is shown at once."""

    @property
    def dashboard(self) -> Dashboard:
        return cast("Dashboard", self.app)

    @property
    def dimension(self) -> str | None:
        choices = [*self.dimensions, None]
        return choices[self.dimension_index % len(choices)]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("loading…", id="summary")
            yield Static("Progress", classes="section")
            yield ProgressPanel("", id="progress")
            yield Static("Traffic distribution and expected reward", classes="section")
            yield Static("", id="traffic")
            yield OutcomesPanel(id="outcomes")
            yield HistoryCharts(id="history")
            yield Static("Guardrails", classes="section")
            yield GuardrailsPanel("", id="guardrails")
            yield Static("Dimensions", classes="section")
            yield DimensionsPanel("", id="dimensions")
            yield Static("Factor importance", classes="section")
            yield Static("", id="importance")
            yield Static("Holdout vs optimized", classes="section")
            yield Static("", id="holdout")
            yield Static("Model state", classes="section")
            yield Static("", id="model")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_data()
        self.set_interval(self.dashboard.refresh_seconds, self.refresh_data)

    @work(exclusive=True, group="optimization")
    async def refresh_data(self) -> None:
        api = self.dashboard.api
        status = self.query_one(StatusLine)
        path = f"/api/v2/optimizations/{self.optimization_id}"
        try:
            optimization = await api.get(path)
            self.contexts = context_choices(optimization)
            self.dimensions = [
                *(f["name"] for f in optimization.get("context_factors", [])),
                *optimization.get("dimensions", []),
            ]
            context = self.contexts[self.context_index % len(self.contexts)]
            try:
                report: dict[str, Any] | None = await api.get(
                    f"{path}/report-data", {"limit": TOP_VARIANTS}
                )
                results = (report or {}).get("results")
                if context or self.dimension:
                    params = {"dimension": self.dimension, "limit": TOP_VARIANTS}
                    if context:
                        params["context"] = msgspec.json.encode(context).decode()
                    results = await api.get(f"{path}/results", params)
            except NotFound:
                report = results = None
        except LeveredError as exc:
            status.fail(exc.message)
            return
        self.show(optimization, report or {}, results)
        status.ok(self.dashboard.clock())

    def show(
        self, optimization: dict[str, Any], report: dict[str, Any], results: dict[str, Any] | None
    ) -> None:
        """Fill every panel from one refresh's documents (``report`` empty when none)."""
        self.title = optimization["name"]
        self.sub_title = f"{report.get('status') or optimization['status']} · "
        self.sub_title += optimization["model_type"]
        labels = variant_labels(results)
        reward_type = (results or {}).get("reward_type")
        self.query_one("#summary", Static).update(describe(optimization))
        self.query_one(ProgressPanel).show(report.get("progress"), labels)
        label = context_label((results or {}).get("context"))
        self.query_one("#traffic", Static).update(
            f"[i]{label}[/i] (c: next context)\n" + traffic(results, self.size.width)
        )
        self.query_one(OutcomesPanel).show(results)
        self.query_one(HistoryCharts).show(results, report.get("lift_history"), labels)
        self.query_one(GuardrailsPanel).show(report.get("guardrails"))
        self.query_one(DimensionsPanel).show(
            (results or {}).get("dimension"), self.dimensions, labels, reward_type
        )
        self.query_one("#importance", Static).update(importance(results))
        self.query_one("#holdout", Static).update(holdout(results))
        self.query_one("#model", Static).update(model_state(results))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_context(self) -> None:
        """Cycle the posterior view: population, then each combination of declared levels."""
        if len(self.contexts) == 1:
            self.notify("no context factors with declared levels to switch between")
            return
        self.context_index = (self.context_index + 1) % len(self.contexts)
        context = self.contexts[self.context_index]
        self.notify(f"context: {context_label(context)}")
        self.refresh_data()

    def action_next_dimension(self) -> None:
        """Cycle the breakdown: each context factor in turn, then off (one request fewer)."""
        if not self.dimensions:
            self.notify("no context factors or dimensions to break the results down by")
            return
        self.dimension_index = (self.dimension_index + 1) % (len(self.dimensions) + 1)
        self.notify(f"dimension: {self.dimension or 'off'}")
        self.refresh_data()
