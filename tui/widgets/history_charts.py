"""Two daily charts side by side (stacked when narrow): the reward rate of the leading arms
and the holdout, from the results' ``time_series``; and the measured lift as it stood each day,
inside its 95 % interval, with that day's own lift and the modeled lift of each day's last
model version, from ``lift-history`` (and today's modeled lift in words).

Below each chart one sentence says what it shows, or why there is no chart yet.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.widgets import Static

from tui.widgets.figures import change, label
from tui.widgets.line_chart import Band, Chart, LineChart, Series

ARMS_CHARTED = 4
WIDE = 140  # from this width the two charts sit side by side


def _charted_arms(results: dict[str, Any]) -> list[int]:
    """The variants with the most traffic now (by weight once trained, else exposures)."""
    variants = sorted(
        results.get("variants") or [],
        key=lambda v: (-(v.get("weight") or 0), -(v.get("exposures") or 0)),
    )
    return [v["number"] for v in variants[:ARMS_CHARTED]]


def _arm_rate(day: dict[str, Any], number: int) -> float | None:
    """A variant's reward per matured exposure that day. The series gives each variant's
    exposures but only the day's matured total, so the variant is assumed to have matured in
    the proportion the optimized traffic did (exact once the day's windows have all closed)."""
    held = day.get("holdout") or {}
    exposures = (day.get("exposures") or 0) - (held.get("exposures") or 0)
    matured = (day.get("matured") or 0) - (held.get("matured") or 0)
    for v in day.get("variants") or []:
        if v["number"] == number and exposures > 0:
            estimate = v["exposures"] * matured / exposures
            return v["reward"] / estimate if estimate > 0 else None
    return None


def rate_chart(results: dict[str, Any] | None, labels: dict[int, str]) -> tuple[Chart | None, str]:
    days = (results or {}).get("time_series") or []
    if len(days) < 2:
        return None, (
            "No exposures yet: the daily reward rate appears from the second day of traffic."
            if not days
            else "1 day of data so far: the daily reward rate per arm appears from day two."
        )
    assert results is not None
    fmt = "{:.1%}".format if results.get("reward_type") == "bool" else "{:.3g}".format
    series = [
        Series(label(labels, n), [_arm_rate(day, n) for day in days])
        for n in _charted_arms(results)
    ]
    holdout = [
        (d["holdout"]["reward"] / d["holdout"]["matured"]) if d["holdout"]["matured"] else None
        for d in days
    ]
    if any(v is not None for v in holdout):
        series.append(Series("holdout", holdout, "grey70"))
    chart = Chart(series, x_labels=(str(days[0]["date"]), str(days[-1]["date"])), fmt=fmt)
    return chart, (
        f"reward per matured exposure, per UTC day, of the {len(series) - 1} variants with the "
        "most traffic and the holdout"
    )


def modeled_lift(results: dict[str, Any] | None) -> str:
    """Today's modeled lift, in words (the chart's modeled line is each day's last model
    version, which may be older than the current posterior's estimate)."""
    modeled = ((results or {}).get("modeled") or {}).get("estimated_improvement_percent")
    if not modeled:
        return ""
    return (
        f"\nmodeled now (this allocation vs the baseline): "
        f"{change(modeled['mean'], [modeled['lo'], modeled['hi']])}"
    )


def lift_chart(
    history: dict[str, Any] | None, results: dict[str, Any] | None = None
) -> tuple[Chart | None, str]:
    points = (history or {}).get("points") or []
    modeled = modeled_lift(results)
    if not points:
        note = (history or {}).get("note")
        return None, (escape(note) if note else "No matured users yet: no lift to chart.") + modeled
    last = points[-1]
    cumulative, daily = last["cumulative"], last["daily"]
    latest = (
        f"{last['date']}: {change(cumulative.get('lift_percent'), cumulative.get('ci'))} over "
        f"{cumulative.get('optimized_users', 0):,} optimized and "
        f"{cumulative.get('holdout_users', 0):,} holdout users; that day's own "
        f"{change(daily.get('lift_percent'), daily.get('ci'))}"
    )
    if len(points) < 2:
        return None, f"1 day so far, the lift on {latest}{modeled}"
    lifts = [p["cumulative"].get("lift_percent") for p in points]
    if all(v is None for v in lifts):
        return (
            None,
            "No lift yet: it needs matured users in both arms and a positive rate." + modeled,
        )
    modeled_series = [(p.get("modeled") or {}).get("percent") for p in points]
    band = Band(
        [(p["cumulative"].get("ci") or [None, None])[0] for p in points],
        [(p["cumulative"].get("ci") or [None, None])[1] for p in points],
    )
    chart = Chart(
        [
            Series("lift so far", lifts, "bright_cyan"),
            Series("that day's users", [p["daily"].get("lift_percent") for p in points], "grey62"),
            *(
                [Series("modeled", modeled_series, "yellow")]
                if any(v is not None for v in modeled_series)
                else []
            ),
        ],
        band=band,
        x_labels=(str(points[0]["date"]), str(points[-1]["date"])),
        reference=0.0,
        fmt="{:+.0f}%".format,
    )
    return chart, f"measured lift, optimized vs holdout per user; latest {latest}{modeled}"


class HistoryCharts(Vertical):
    DEFAULT_CSS = """
    HistoryCharts { height: auto; layout: grid; grid-size: 1; grid-rows: auto; grid-gutter: 0 2; }
    HistoryCharts.-wide { grid-size: 2; }
    HistoryCharts > Vertical { height: auto; }
    HistoryCharts .chart-title { text-style: bold; color: $accent; margin: 1 0 0 0; }
    HistoryCharts .chart-note { color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Reward rate per day, per arm", classes="chart-title")
            yield LineChart(id="rate-chart")
            yield Static("", id="rate-note", classes="chart-note")
        with Vertical():
            yield Static("Lift history (95 % interval shaded)", classes="chart-title")
            yield LineChart(id="lift-chart")
            yield Static("", id="lift-note", classes="chart-note")

    def on_resize(self) -> None:
        self.set_class(self.size.width >= WIDE, "-wide")

    def show(
        self,
        results: dict[str, Any] | None,
        history: dict[str, Any] | None,
        labels: dict[int, str],
    ) -> None:
        for name, (chart, note) in (
            ("rate", rate_chart(results, labels)),
            ("lift", lift_chart(history, results)),
        ):
            widget = self.query_one(f"#{name}-chart", LineChart)
            widget.plot(chart)
            widget.display = chart is not None
            self.query_one(f"#{name}-note", Static).update(note)
