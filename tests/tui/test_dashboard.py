"""The dashboard driven by Textual's pilot against a real server process serving real data.

(An in-process app would run on the test client's portal loop, not the dashboard's.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
from textual.widgets import DataTable, Static

from levered.db.embedded_host import free_port
from tests.conftest import Org, launch_server, make_metric, stop_server
from tests.warehouse_traffic import postgres_body
from tui.app import DashboardApp
from tui.screens.optimization import OptimizationScreen
from tui.widgets.status_line import StatusLine

HERO = [
    {"name": "headline", "levels": ["Ship faster", "Build better", "Scale up"]},
    {"name": "cta_text", "levels": ["Get started", "Try it free"]},
]


async def _create(server_url: str, conn: asyncpg.Connection, org: Org, name: str) -> str:
    metric = await make_metric(conn, org)
    async with httpx.AsyncClient(base_url=server_url) as http:
        response = await http.post(
            "/api/v2/optimizations",
            headers=org.headers,
            json={"name": name, "design_factors": HERO, "reward_metric_id": str(metric)},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _settle(pilot: Any, condition: Any, tries: int = 100) -> None:
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("dashboard did not reach the expected state")


async def test_overview_lists_and_opens_an_optimization(
    server_url: str, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    await _create(server_url, conn, org, "Landing Page Hero")
    await _create(server_url, conn, other_org, "Not yours")
    app = DashboardApp(server_url, org.api_key, refresh_seconds=60)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await _settle(pilot, lambda: table.row_count == 1)
        assert "Landing Page Hero" in str(table.get_row_at(0))
        assert app.screen.query_one(StatusLine).problem is None
        assert str(app.screen.sub_title).startswith("1 optimization · ")

        await pilot.press("/")
        await pilot.press(*"zzz")
        await _settle(pilot, lambda: table.row_count == 0)
        assert str(app.screen.sub_title).startswith("0 optimizations of 1 · ")
        await pilot.press("escape")
        await _settle(pilot, lambda: table.row_count == 1)

        await pilot.press("enter")
        await _settle(pilot, lambda: isinstance(app.screen, OptimizationScreen))
        summary = app.screen.query_one("#summary", Static)
        await _settle(pilot, lambda: "Landing Page Hero" in str(summary.render()))
        assert "uniform" in str(app.screen.query_one("#traffic", Static).render())
        await pilot.press("escape")
        await _settle(pilot, lambda: not isinstance(app.screen, OptimizationScreen))


async def test_a_connected_warehouse_that_stops_answering_is_on_the_overview(
    server_url: str, conn: asyncpg.Connection, org: Org, customer: str
) -> None:
    async with httpx.AsyncClient(base_url=server_url) as http:
        connected = await http.put(
            "/api/v2/warehouse", json=postgres_body(customer), headers=org.headers
        )
    assert connected.status_code == 200, connected.text
    await _create(server_url, conn, org, "Landing Page Hero")
    app = DashboardApp(server_url, org.api_key, refresh_seconds=60)
    async with app.run_test(size=(120, 30)) as pilot:
        line = app.screen.query_one("#warehouse", Static)
        await _settle(pilot, lambda: "answering" in str(line.render()))
        assert "warehouse: postgres analytics at" in str(line.render())
        assert line.display

        await conn.execute(
            "UPDATE warehouse_connections SET settings = settings || '{\"port\": 1}'::jsonb "
            "WHERE organization_id = $1",
            org.id,
        )
        await pilot.press("r")
        await _settle(pilot, lambda: "is not answering" in str(line.render()), tries=200)
        assert "serving goes on with each optimization's last model" in str(line.render())
        # The rest of the overview is unaffected: the optimizations are still listed.
        assert app.screen.query_one(DataTable).row_count == 1


async def test_the_managed_warehouse_has_no_line(server_url: str, org: Org) -> None:
    app = DashboardApp(server_url, org.api_key, refresh_seconds=60)
    async with app.run_test(size=(80, 24)) as pilot:
        empty = app.screen.query_one("#empty", Static)
        await _settle(pilot, lambda: "levered demo" in str(empty.render()))
        await pilot.pause(0.2)
        assert not app.screen.query_one("#warehouse", Static).display


async def test_empty_organization_shows_a_hint(server_url: str, org: Org) -> None:
    app = DashboardApp(server_url, org.api_key, refresh_seconds=60)
    async with app.run_test(size=(80, 24)) as pilot:
        empty = app.screen.query_one("#empty", Static)
        await _settle(pilot, lambda: "levered demo" in str(empty.render()))


async def test_lost_server_is_a_status_line_not_a_crash() -> None:
    app = DashboardApp("http://127.0.0.1:9", "lvk_whatever_x", refresh_seconds=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.screen.query_one(StatusLine)
        await _settle(pilot, lambda: status.problem is not None)
        assert "cannot reach" in str(status.render())
        await pilot.pause(0.5)  # several failed refreshes later, still running
        assert app.is_running


async def test_bad_credentials_are_a_status_line(server_url: str, db_url: str) -> None:
    app = DashboardApp(server_url, "lvk_aaaaaaaa_bogus", refresh_seconds=60)
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.screen.query_one(StatusLine)
        await _settle(pilot, lambda: status.problem is not None)
        assert "API key" in str(status.render())


async def test_dashboard_recovers_when_the_server_comes_back(
    migrated_url: str, org: Org, tmp_path: Path
) -> None:
    port = free_port()
    app = DashboardApp(f"http://127.0.0.1:{port}", org.api_key, refresh_seconds=0.3)
    async with app.run_test(size=(100, 30)) as pilot:
        status = app.screen.query_one(StatusLine)
        await _settle(pilot, lambda: status.problem is not None)
        server = await anyio.to_thread.run_sync(
            launch_server, migrated_url, port, tmp_path / "server.log"
        )
        try:
            await _settle(pilot, lambda: status.problem is None, tries=400)
            assert "refreshed" in str(status.render())
        finally:
            await anyio.to_thread.run_sync(stop_server, server)


async def test_context_key_cycles_the_posterior_view(
    server_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    metric = await make_metric(conn, org)
    async with httpx.AsyncClient(base_url=server_url) as http:
        created = await http.post(
            "/api/v2/optimizations",
            headers=org.headers,
            json={
                "name": "Per device",
                "design_factors": HERO,
                "reward_metric_id": str(metric),
                "context_factors": [{"name": "device", "levels": ["mobile", "desktop"]}],
            },
        )
    app = DashboardApp(server_url, org.api_key, refresh_seconds=60)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await _settle(pilot, lambda: table.row_count == 1)
        await pilot.press("enter")
        await _settle(pilot, lambda: isinstance(app.screen, OptimizationScreen))
        traffic = app.screen.query_one("#traffic", Static)
        await _settle(pilot, lambda: "population" in str(traffic.render()))
        await pilot.press("c")
        await _settle(pilot, lambda: "device=mobile" in str(traffic.render()))
        await pilot.press("c")
        await _settle(pilot, lambda: "device=desktop" in str(traffic.render()))
    assert created.status_code == 201


async def test_ten_thousand_variants_show_the_top_with_a_hint_even_narrow(
    server_url: str, conn: asyncpg.Connection, org: Org
) -> None:
    metric = await make_metric(conn, org)
    design = [{"name": f"f{i}", "levels": [f"l{j}" for j in range(10)]} for i in range(4)]
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as http:
        created = await http.post(
            "/api/v2/optimizations",
            headers=org.headers,
            json={"name": "Huge", "design_factors": design, "reward_metric_id": str(metric)},
        )
    assert created.status_code == 201, created.text
    app = DashboardApp(server_url, org.api_key, refresh_seconds=60)
    async with app.run_test(size=(50, 16)) as pilot:
        table = app.screen.query_one(DataTable)
        await _settle(pilot, lambda: table.row_count == 1)
        await pilot.press("enter")
        await _settle(pilot, lambda: isinstance(app.screen, OptimizationScreen))
        traffic = app.screen.query_one("#traffic", Static)
        await _settle(pilot, lambda: "of 10,000 variants" in str(traffic.render()), tries=300)
        assert app.is_running
