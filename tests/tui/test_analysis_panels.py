"""The optimization screen's analysis panels (progress, history charts, guardrails, dimensions)
driven by Textual's pilot against a real server process, on four days of simulated traffic
with a trained model and a refund guardrail that is breached: each panel shows the numbers the
API computed, and empty optimizations and API errors give sentences, not crashes."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx

from tests.conftest import Org, make_metric
from tests.integration import test_weighted_outcomes as weighted
from tests.integration.test_guardrails import refund_metric
from tests.integration.test_training import REWARD_COLUMNS, make_optimization, simulate
from tui.app import DashboardApp
from tui.screens.optimization import OptimizationScreen
from tui.widgets.dimensions_panel import DimensionsPanel
from tui.widgets.figures import change, rate_interval
from tui.widgets.guardrails_panel import GuardrailsPanel
from tui.widgets.history_charts import HistoryCharts
from tui.widgets.line_chart import LineChart
from tui.widgets.outcomes_panel import OutcomesPanel
from tui.widgets.progress_panel import ProgressPanel
from tui.widgets.status_line import StatusLine

DAYS = 4
USERS_PER_DAY = 1500
SPACING = timedelta(seconds=30)  # simulate()'s gap between users


def text(widget: Any) -> str:
    return str(widget.render())


async def settle(pilot: Any, condition: Any, tries: int = 200) -> None:
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("dashboard did not reach the expected state")


async def create(server_url: str, conn: asyncpg.Connection, org: Org, **fields: Any) -> str:
    """An optimization over two factors, without traffic, created through the API."""
    metric = await make_metric(conn, org)
    design = [{"name": "headline", "levels": ["A", "B"]}, {"name": "cta", "levels": ["x", "y"]}]
    async with httpx.AsyncClient(base_url=server_url, headers=org.headers) as http:
        response = await http.post(
            "/api/v2/optimizations",
            json={"name": "Empty", "design_factors": design, "reward_metric_id": str(metric)}
            | fields,
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def seeded(server_url: str, conn: asyncpg.Connection, org: Org) -> UUID:
    """Four days of traffic (variant 3 best), trained; refunds at 20 % of optimized users and
    10 % of holdout users, against a guardrail that tolerates a 5 % rise and pauses."""
    optimization_id = await make_optimization(conn, org)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(7)
    refunds = []
    for day in range(DAYS):
        start = today - timedelta(days=DAYS - day) + timedelta(hours=1)
        traffic = await simulate(
            conn, org, optimization_id, users=USERS_PER_DAY, holdout_every=5,
            seed=day, prefix=f"d{day}-", start=start,
        )  # fmt: skip
        for i in range(USERS_PER_DAY):
            user = f"d{day}-{i}"
            if rng.random() < (0.1 if user in traffic.holdout else 0.2):
                at = start + SPACING * i + timedelta(minutes=3)
                refunds.append((org.id, user, "refund", 1.0, at))
    await conn.copy_records_to_table(
        "rewards", schema_name="warehouse", records=refunds, columns=REWARD_COLUMNS
    )
    refund_id = await refund_metric(conn, org)
    model_id = await conn.fetchval(
        "SELECT id FROM models WHERE optimization_id = $1", optimization_id
    )
    async with httpx.AsyncClient(base_url=server_url, headers=org.headers, timeout=60) as http:
        trained = await http.post(f"/api/v2/models/{model_id}/train?seed=5")
        assert trained.status_code == 201, trained.text
        guardrail = {
            "metric_id": str(refund_id),
            "direction": "must_not_increase",
            "tolerance_percent": 5,
            "auto_pause": True,
        }
        updated = await http.patch(
            f"/api/v2/optimizations/{optimization_id}", json={"guardrails": [guardrail]}
        )
        assert updated.status_code == 200, updated.text
        # Build the guardrail's cells now, so the dashboard's first refresh is not the one
        # that waits for them on a busy machine.
        warmed = await http.get(f"/api/v2/optimizations/{optimization_id}/report-data")
        assert warmed.status_code == 200, warmed.text
    return optimization_id


async def open_screen(pilot: Any, app: DashboardApp, optimization_id: str) -> OptimizationScreen:
    screen = OptimizationScreen(optimization_id)
    await app.push_screen(screen)
    status = screen.query_one(StatusLine)
    await settle(pilot, lambda: status.refreshed_at is not None or status.problem, tries=600)
    assert status.problem is None, status.problem
    return screen


async def test_panels_show_the_api_numbers(
    server_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await seeded(server_url, conn, org)
    app = DashboardApp(server_url, org.api_key, refresh_seconds=3600)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await open_screen(pilot, app, str(optimization_id))
        async with httpx.AsyncClient(base_url=server_url, headers=org.headers) as http:
            base = f"/api/v2/optimizations/{optimization_id}"
            report = (await http.get(f"{base}/report-data", params={"limit": 15})).json()
            breakdown = (await http.get(f"{base}/results", params={"dimension": "country"})).json()

        progress = report["progress"]
        shown = text(screen.query_one(ProgressPanel))
        users = f"{progress['optimized_users']:,} optimized / {progress['holdout_users']:,} holdout"
        assert users in shown
        assert progress["leader"] == 3 and "leader #3 c" in shown
        assert f"prob_best {progress['leader_prob_best']:.3f}, certain at 0.95" in shown
        assert progress["decided"] and "decided: the leader has reached" in shown
        assert f"(since {progress['started_at'][:10]} UTC)" in shown
        arms = {a["number"]: a["exposures"] for a in progress["arms"]}
        assert f"#3 {arms[3]:,} (" in shown and f"#1 {arms[1]:,} (" in shown

        guardrail = report["guardrails"]["guardrails"][0]
        assert guardrail["status"] == "violated"
        shown = text(screen.query_one(GuardrailsPanel))
        assert "violated" in shown and "Refunds must not rise more than 5 %" in shown
        assert change(guardrail["change_percent"], guardrail["ci"]) in shown
        assert f"({guardrail['optimized_users']:,} users)" in shown
        assert "auto-pause on" in shown and "paused automatically" in shown
        assert "paused" in str(screen.sub_title)

        charts = screen.query_one(HistoryCharts)
        assert charts.has_class("-wide")  # 160 columns: side by side
        rate_chart = screen.query_one("#rate-chart", LineChart)
        assert rate_chart.display and rate_chart.chart is not None
        assert [s.label for s in rate_chart.chart.series][-1] == "holdout"
        assert rate_chart.chart.series[0].label.startswith("#3 c")
        points = report["lift_history"]["points"]
        assert len(points) == DAYS
        lift_chart = screen.query_one("#lift-chart", LineChart)
        assert lift_chart.display and lift_chart.chart is not None
        assert lift_chart.chart.band is not None
        last = points[-1]["cumulative"]
        assert list(lift_chart.chart.series[0].values)[-1] == last["lift_percent"]
        assert lift_chart.chart.band.hi[-1] == last["ci"][1]
        note = text(screen.query_one("#lift-note"))
        assert change(last["lift_percent"], last["ci"]) in note
        modeled = report["results"]["modeled"]["estimated_improvement_percent"]
        assert change(modeled["mean"], [modeled["lo"], modeled["hi"]]) in note
        assert "⣀" in text(lift_chart) or any(0x2800 < ord(ch) < 0x2900 for ch in text(lift_chart))

        dimensions = screen.query_one(DimensionsPanel)
        shown = text(dimensions)
        assert "by country" in shown
        for value in breakdown["dimension"]["values"]:
            optimized = value["optimized"]
            assert f"{value['value']}  {value['exposures']:,} exposures" in shown
            assert rate_interval(optimized["rate"], optimized["ci"], "bool") in shown
        await pilot.press("d")
        await settle(pilot, lambda: "Press d" in text(dimensions))
        await pilot.press("d")
        await settle(pilot, lambda: "by country" in text(dimensions))


async def test_an_optimization_without_data_shows_sentences(
    server_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await create(server_url, conn, org)
    app = DashboardApp(server_url, org.api_key, refresh_seconds=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_screen(pilot, app, optimization_id)
        assert screen.query_one(StatusLine).problem is None
        assert "No exposures yet" in text(screen.query_one(ProgressPanel))
        assert not screen.query_one(OutcomesPanel).display
        assert "No guardrails" in text(screen.query_one(GuardrailsPanel))
        assert "No context factors" in text(screen.query_one(DimensionsPanel))
        assert not screen.query_one("#rate-chart", LineChart).display
        assert "No exposures yet" in text(screen.query_one("#rate-note"))
        assert not screen.query_one(HistoryCharts).has_class("-wide")
        await pilot.press("d")
        assert app.is_running


async def test_a_missing_optimization_is_a_status_line(server_url: str, org: Org) -> None:
    app = DashboardApp(server_url, org.api_key, refresh_seconds=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = OptimizationScreen(str(uuid.uuid4()))
        await app.push_screen(screen)
        status = screen.query_one(StatusLine)
        await settle(pilot, lambda: status.problem is not None)
        assert "no optimization" in text(status)
        assert app.is_running


async def test_context_factor_optimization_offers_its_dimension(
    server_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    optimization_id = await create(
        server_url, conn, org, context_factors=[{"name": "device", "levels": ["mobile", "pc"]}]
    )
    app = DashboardApp(server_url, org.api_key, refresh_seconds=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_screen(pilot, app, optimization_id)
        dimensions = screen.query_one(DimensionsPanel)
        assert "by device" in text(dimensions) and "No matured exposures yet" in text(dimensions)


async def test_weighted_metric_shows_the_outcome_mix(
    server_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    async with httpx.AsyncClient(base_url=server_url, headers=org.headers, timeout=60) as http:
        metric = await http.post("/api/v2/metrics", json=weighted.BASE)
        assert metric.status_code == 201, metric.text
        optimization_id = await weighted.make_optimization(conn, org, UUID(metric.json()["id"]))
        await weighted.simulate(conn, org, optimization_id, users=1500)
        model_id = await conn.fetchval(
            "SELECT id FROM models WHERE optimization_id = $1", optimization_id
        )
        assert (await http.post(f"/api/v2/models/{model_id}/train?seed=3")).status_code == 201
        results = (await http.get(f"/api/v2/optimizations/{optimization_id}/results")).json()
    app = DashboardApp(server_url, org.api_key, refresh_seconds=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(pilot, app, str(optimization_id))
        panel = screen.query_one(OutcomesPanel)
        assert panel.display
        rows = text(panel.query_one("#outcomes-table")).splitlines()
        assert rows[0].split() == ["add_to_cart", "×0.1", "purchase", "×1", "failure", "×0"]
        for v, row in zip(results["variants"], rows[1:], strict=True):
            shares = [f"{o['share']:.1%}" for o in v["outcomes"]]
            assert row.startswith(f"#{v['number']} ") and row.split()[-3:] == shares
