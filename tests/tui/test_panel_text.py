"""The analysis panels' text and the line chart, from hand-made documents (no server): the
statuses, estimates, empty states and escaping each panel promises."""

from __future__ import annotations

from typing import Any

from textual.content import Content

from tui.screens.optimization import holdout
from tui.widgets.dimensions_panel import dimensions_text
from tui.widgets.guardrails_panel import guardrails_text
from tui.widgets.history_charts import lift_chart, rate_chart
from tui.widgets.line_chart import Band, Chart, Series, draw
from tui.widgets.outcomes_panel import outcomes_text
from tui.widgets.progress_panel import progress_text
from tui.widgets.warehouse_line import warehouse_line


def plain(markup: str) -> str:
    return Content.from_markup(markup).plain


def guardrail(**fields: Any) -> dict[str, Any]:
    return {
        "metric_id": "m1",
        "metric_name": "Refunds",
        "reward_type": "bool",
        "direction": "must_not_increase",
        "tolerance_percent": 5,
        "auto_pause": False,
        "status": "pending",
        "reason": "fewer than 100 users per arm",
        "optimized_rate": 0.1,
        "holdout_rate": 0.1,
        "optimized_users": 50,
        "holdout_users": 20,
        "change_percent": 0.0,
        "ci": None,
    } | fields


def test_guardrail_statuses_have_their_colour_and_numbers() -> None:
    report = {
        "guardrails": [
            guardrail(status="ok", change_percent=-1.25, ci=[-3.0, 2.5], reason="within"),
            guardrail(status="violated", direction="must_not_decrease", auto_pause=True),
            guardrail(metric_name=None, metric_id="gone"),
        ]
    }
    markup = guardrails_text(report, width=160)
    assert "[green]● ok" in markup and "[bold red]● violated" in markup
    assert "[yellow]● pending" in markup
    text = plain(markup)
    assert "change -1.2 % [-3.0, +2.5]" in text and "Refunds must not fall more than 5 %" in text
    assert "auto-pause on" in text and "metric gone (deleted)" in text
    assert "optimized 10.00% (50 users) vs holdout 10.00% (20 users)" in text
    assert len(markup.splitlines()) == 9  # three lines each when wide
    assert len(guardrails_text(report, width=80).splitlines()) == 12


def test_no_guardrails_and_an_escaped_name() -> None:
    assert "No guardrails" in guardrails_text({"guardrails": []})
    text = plain(guardrails_text({"guardrails": [guardrail(metric_name="[b]x[/b]")]}))
    assert "[b]x[/b]" in text


def test_progress_estimate_and_the_untrained_state() -> None:
    p = {
        "started_at": "2026-12-01T00:00:00Z",
        "days_running": 3.5,
        "optimized_users": 2700,
        "holdout_users": 300,
        "arms": [{"number": n, "exposures": 1000 - n, "prob_best": 0.3} for n in range(1, 9)],
        "leader": 2,
        "leader_prob_best": 0.76,
        "threshold": 0.95,
        "certainty": 0.8,
        "decided": False,
        "daily_observations": 4800.0,
        "observations_to_decision": 12000,
        "expected_days_to_decision": 2.5,
        "method": "z-scaling",
    }
    text = plain(progress_text(p, {2: "#2 Ship / Go"}, width=80))
    assert "day 4 (since 2026-12-01 UTC)" in text
    assert "2,700 optimized / 300 holdout users" in text
    assert "leader #2 Ship / Go: prob_best 0.760, certain at 0.95" in text and "80%" in text
    assert "decision in ~2.5 days: 12,000 more observations at 4,800/day" in text
    assert "… " in text and all(len(line) <= 80 for line in text.splitlines())
    assert "z-scaling" in text
    untrained = p | {"leader": None, "expected_days_to_decision": None, "method": "not trained"}
    text = plain(progress_text(untrained, {}))
    assert "none until the first training" in text and "no estimate yet" in text
    assert "No exposures yet" in progress_text(p | {"started_at": None}, {})


def test_dimension_values_and_the_empty_states() -> None:
    arm = {"number": 1, "exposures": 200, "reward_sum": 20.0, "rate": 0.1, "ci": [0.06, 0.14]}
    breakdown = {
        "name": "device",
        "values_total": 2,
        "values": [
            {
                "value": "[i]odd",
                "exposures": 300,
                "variants": [arm],
                "optimized": arm,
                "holdout": arm | {"number": None, "exposures": 100},
                "lift_percent": 0.0,
                "lift_ci": [-20.0, 25.0],
            },
            {
                "value": None,
                "exposures": 0,
                "variants": [],
                "optimized": arm,
                "holdout": arm,
                "lift_percent": None,
                "lift_ci": None,
            },
        ],
    }
    text = plain(dimensions_text(breakdown, ["device"], {1: "#1 a"}, "bool"))
    assert "[i]odd  300 exposures" in text and "(not sent)" in text
    assert "optimized 10.00% [6.00%, 14.00%]" in text and "lift +0.0 % [-20.0, +25.0]" in text
    assert "#1 a" in text
    assert "Press d" in dimensions_text(None, ["device"], {}, "bool")
    assert "No context factors" in dimensions_text(None, [], {}, "bool")


def test_chart_draws_lines_gaps_band_and_labels() -> None:
    chart = Chart(
        [Series("a", [1.0, 2.0, None, 4.0])],
        band=Band([0.0, 1.0, None, 3.0], [2.0, 3.0, None, 5.0]),
        x_labels=("2026-12-01", "2026-12-04"),
        reference=0.0,
    )
    text = draw(chart, 40, 10)
    lines = text.plain.splitlines()
    assert len(lines) == 10 and all(len(line) <= 40 for line in lines)
    assert "━ a" in lines[0] and "95 % interval" in lines[0]
    assert lines[-1].strip().startswith("2026-12-01") and lines[-1].endswith("2026-12-04")
    assert any(0x2800 < ord(ch) <= 0x28FF for ch in text.plain)
    shaded = [span for span in text.spans if "on " in str(span.style)]
    assert shaded
    # The gap: no dots in the columns around the missing third point.
    plot = [line[5:] for line in lines[1:-1]]
    middle = {line[len(line) * 5 // 9] for line in plot}
    assert middle <= {" ", "┈"}
    assert draw(Chart([Series("a", [None])]), 40, 10).plain == "no data"
    assert "┤" in draw(Chart([Series("flat", [2.0, 2.0])]), 30, 6).plain


def test_history_charts_explain_why_there_is_no_chart() -> None:
    chart, note = rate_chart({"time_series": []}, {})
    assert chart is None and "No exposures yet" in note
    one_day = {"date": "2026-12-01", "daily": {}, "cumulative": {"lift_percent": 5.0}}
    chart, note = lift_chart({"points": [one_day]})
    assert chart is None and "1 day so far" in note
    chart, note = lift_chart({"points": [], "note": "the optimization has no reward metric"})
    assert chart is None and "no reward metric" in note
    modeled = {"modeled": {"estimated_improvement_percent": {"mean": 12.0, "lo": -3.0, "hi": 30.0}}}
    _, note = lift_chart({"points": [one_day]}, modeled)
    assert "modeled now (this allocation vs the baseline): +12.0 % [-3.0, +30.0]" in note


def test_arm_rates_scale_by_the_days_maturity() -> None:
    day = {
        "date": "2026-12-01",
        "exposures": 300,
        "matured": 150,
        "reward": 30.0,
        "variants": [{"number": 1, "exposures": 100, "reward": 10.0}],
        "holdout": {"exposures": 100, "matured": 50, "reward": 5.0},
    }
    results = {
        "reward_type": "bool",
        "variants": [{"number": 1, "weight": 1.0, "exposures": 100}],
        "time_series": [day, day],
    }
    chart, _ = rate_chart(results, {})
    assert chart is not None
    # Half the optimized exposures matured: 10 rewards over an estimated 50 matured.
    assert list(chart.series[0].values) == [0.2, 0.2]
    assert list(chart.series[1].values) == [0.1, 0.1] and chart.series[1].label == "holdout"


def test_outcome_mix_is_a_table_only_for_weighted_metrics() -> None:
    def mix(cart: float | None, failure: float | None) -> list[dict[str, Any]]:
        return [
            {"key": "cart", "weight": 0.1, "exposures": 1, "share": cart},
            {"key": "failure", "weight": 0.0, "exposures": 3, "share": failure},
        ]

    results = {
        "variants": [
            {"number": 1, "variant": {"h": "[b]A"}, "outcomes": mix(0.25, 0.75)},
            {"number": 2, "variant": {"h": "B"}, "outcomes": mix(None, None)},
        ]
    }
    table = outcomes_text(results)
    assert table is not None
    rows = plain(table).splitlines()
    assert rows[0].split() == ["cart", "×0.1", "failure", "×0"]
    assert rows[1].startswith("#1 [b]A ") and rows[1].split()[-2:] == ["25.0%", "75.0%"]
    assert rows[2].split()[-2:] == ["-", "-"]
    assert len({len(row) for row in rows[1:]}) == 1  # aligned columns
    assert outcomes_text({"variants": [{"number": 1, "variant": {}, "outcomes": None}]}) is None


def test_holdout_line_shows_no_number_it_does_not_have() -> None:
    lift = {
        "optimized_rate": 0.05,
        "holdout_rate": None,
        "optimized_users": 40,
        "holdout_users": 0,
        "lift_percent": None,
        "ci": None,
        "p_value": None,
    }
    text = holdout({"measured_lift": lift})
    assert "vs holdout n/a (0 users): lift n/a (interval once" in text
    assert "optimized 5.000% (40 users)" in text
    measured = holdout(
        {
            "measured_lift": lift
            | {
                "holdout_rate": 0.04,
                "holdout_users": 400,
                "lift_percent": 25.0,
                "ci": [5.0, 45.0],
                "p_value": None,
            }
        }
    )
    assert "lift +25.0 % (95% CI +5.0% … +45.0%)" in measured
    assert "No holdout comparison yet" in holdout({"measured_lift": lift | {"optimized_users": 0}})


def test_warehouse_line_for_each_state() -> None:
    assert warehouse_line(None) == "" and warehouse_line({"provider": "managed"}) == ""
    connected = {
        "provider": "postgres",
        "dataset_id": "analytics",
        "healthy": True,
        "connection": {"host": "db.internal", "port": 5432, "database": "shop"},
    }
    assert plain(warehouse_line(connected)) == (
        "warehouse: postgres analytics at db.internal:5432/shop answering"
    )
    down = connected | {"healthy": False, "error": "cannot be reached: [Errno 111] refused"}
    text = plain(warehouse_line(down))
    assert "postgres analytics at db.internal:5432/shop is not answering: cannot be reached" in text
    assert "[Errno 111]" in text  # escaped, not read as markup
    assert "serving goes on with each optimization's last model" in text
    own = connected | {"exposures": {"table": "app_[b]exposures", "columns": {}}}
    assert plain(warehouse_line(own)) == (
        "warehouse: postgres analytics at db.internal:5432/shop, exposures from your table "
        "app_[b]exposures answering"
    )
    clickhouse = {"provider": "clickhouse", "healthy": True, "connection": {"url": "chdb:///x"}}
    assert plain(warehouse_line(clickhouse)) == "warehouse: clickhouse at chdb:///x answering"
