"""Snapshot tests of the dashboard's key screens (pytest-textual-snapshot), rendered from a
real server process with real data. The data is fixed (names, designs, untrained models) and
the status-line clock is injected, so the pictures are stable; a changed layout fails here
until `pytest --snapshot-update` records the new one (review the SVGs before committing)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from levered.db.pool import connect
from tests.conftest import Org, make_metric, make_org
from tui.app import DashboardApp
from tui.screens.optimization import OptimizationScreen

FIXED_NOW = datetime(2026, 11, 22, 9, 30, 0)
DESIGN = [
    {"name": "headline", "levels": ["Ship faster", "Build better", "Start free"]},
    {"name": "cta_text", "levels": ["Get started", "Try it free"]},
]


def _org_with(names: list[str], migrated_url: str, server_url: str) -> Org:
    async def create() -> Org:
        conn = await connect(migrated_url)
        try:
            org = await make_org(conn, f"Snap {uuid.uuid4().hex[:8]}")
            metric = await make_metric(conn, org)
        finally:
            await conn.close()
        async with httpx.AsyncClient(base_url=server_url) as http:
            for name in names:
                response = await http.post(
                    "/api/v2/optimizations",
                    headers=org.headers,
                    json={
                        "name": name,
                        "design_factors": DESIGN,
                        "reward_metric_id": str(metric),
                        "context_factors": [{"name": "device", "levels": ["mobile", "desktop"]}],
                    },
                )
                assert response.status_code == 201, response.text
        return org

    return anyio.run(create)


async def _rows(pilot: Pilot[Any], count: int) -> None:
    for _ in range(200):
        table = pilot.app.screen.query(DataTable)
        if table and table.first().row_count == count:
            return
        await pilot.pause(0.05)
    raise AssertionError("rows did not load")


def _app(server_url: str, org: Org) -> DashboardApp:
    return DashboardApp(server_url, org.api_key, refresh_seconds=3600, clock=lambda: FIXED_NOW)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_overview(
    snap_compare: Any, server_url: str, migrated_url: str, size: tuple[int, int]
) -> None:
    org = _org_with(["Landing Page Hero", "Pricing page"], migrated_url, server_url)

    async def loaded(pilot: Pilot[Any]) -> None:
        await _rows(pilot, 2)

    assert snap_compare(_app(server_url, org), terminal_size=size, run_before=loaded)


def test_empty_overview(snap_compare: Any, server_url: str, migrated_url: str) -> None:
    org = _org_with([], migrated_url, server_url)

    async def loaded(pilot: Pilot[Any]) -> None:
        for _ in range(200):
            if "levered demo" in str(pilot.app.screen.query_one("#empty", Static).render()):
                return
            await pilot.pause(0.05)

    assert snap_compare(_app(server_url, org), terminal_size=(80, 24), run_before=loaded)


def test_optimization_view(snap_compare: Any, server_url: str, migrated_url: str) -> None:
    org = _org_with(["Landing Page Hero"], migrated_url, server_url)

    async def opened(pilot: Pilot[Any]) -> None:
        await _rows(pilot, 1)
        await pilot.press("enter")
        for _ in range(200):
            screen = pilot.app.screen
            if (
                isinstance(screen, OptimizationScreen)
                and "Hero" in str(screen.query_one("#summary", Static).render())
                and "population" in str(screen.query_one("#traffic", Static).render())
            ):
                return
            await pilot.pause(0.05)
        raise AssertionError("optimization view did not load")

    assert snap_compare(_app(server_url, org), terminal_size=(120, 40), run_before=opened)
