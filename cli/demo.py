"""``levered demo``: a server, a demo optimization and simulated traffic, in the dashboard.

Simulated users arrive on mobile or desktop; which headline × CTA converts best depends on the
device, so a newcomer watches the contextual model find a different winner per context. All
traffic goes through the real HTTP API: ``serve`` (which records exposures) and the rewards
ingestion endpoint. The conversion window is one minute so results mature while you watch;
the demo asks for a training every few seconds instead of waiting for the scheduler.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
from cyclopts import Parameter

from cli.console import EXIT_UNAVAILABLE, fail, notice
from cli.flags import ApiUrlFlag, JsonFlag
from cli.output import emit_json
from cli.session import api_url
from levered.client.api import LeveredAPI
from levered.errors import LeveredError, NotFound

HEADLINES = ["Ship faster", "Build better", "Start free"]
CTAS = ["Get started", "Try it free"]
DEVICES = ["mobile", "desktop"]
# True conversion rates: mobile users love "Start free" + "Try it free", desktop users
# "Build better" + "Get started"; everything else converts at the base rate.
BASE_RATE = 0.04
BEST = {
    "mobile": ("Start free", "Try it free", 0.14),
    "desktop": ("Build better", "Get started", 0.12),
}
DEMO_NAME = "Demo: landing page hero"


def conversion_rate(variant: dict[str, Any], device: str) -> float:
    headline, cta, rate = BEST[device]
    if variant.get("headline") == headline and variant.get("cta_text") == cta:
        return rate
    if variant.get("headline") == headline or variant.get("cta_text") == cta:
        return (BASE_RATE + rate) / 2
    return BASE_RATE


@dataclass
class Tally:
    served: int = 0
    conversions: int = 0
    trainings: int = 0
    errors: list[str] = field(default_factory=list)


async def setup(api: LeveredAPI) -> str:
    """Create (or reuse) the demo metric and optimization; returns the optimization id."""
    existing = await api.get("/api/v2/optimizations", {"limit": 100})
    for o in existing["optimizations"]:
        if o["name"] == DEMO_NAME and o["status"] == "live":
            return str(o["id"])
    metric = await api.post(
        "/api/v2/metrics",
        {
            "name": "Demo sign-ups",
            "sql": "SELECT anonymous_id, timestamp FROM rewards WHERE name = 'demo_signup' "
            "AND timestamp >= @start_date",
            "anonymous_id_col": "anonymous_id",
            "timestamp_col": "timestamp",
        },
    )
    created = await api.post(
        "/api/v2/optimizations",
        {
            "name": DEMO_NAME,
            "reward_metric_id": metric["id"],
            "model_type": "cmab",
            "design_factors": [
                {"name": "headline", "levels": HEADLINES},
                {"name": "cta_text", "levels": CTAS},
            ],
            "context_factors": [{"name": "device", "levels": DEVICES}],
            "attribution": {"type": "last_touch", "conversion_window_hours": 1 / 60},
            "holdout_percentage": 10,
        },
    )
    return str(created["id"])


async def simulate(
    api: LeveredAPI,
    optimization_id: str,
    *,
    users_per_second: float,
    seconds: float | None,
    stop: threading.Event,
    tally: Tally,
) -> None:
    """Serve users, convert some, post their rewards, train now and then."""
    started = time.monotonic()
    last_train = started
    pending: list[dict[str, Any]] = []
    while not stop.is_set() and (seconds is None or time.monotonic() - started < seconds):
        tick = time.monotonic()
        for _ in range(max(1, round(users_per_second / 4))):
            device = random.choice(DEVICES)
            user = f"demo-{random.getrandbits(48):012x}"
            try:
                served = await api.post(
                    f"/api/v2/optimizations/{optimization_id}/serve",
                    {"anonymous_id": user, "context": {"device": device}},
                )
            except LeveredError as exc:
                tally.errors.append(exc.message)
                continue
            tally.served += 1
            if random.random() < conversion_rate(served["variant"], device):
                tally.conversions += 1
                pending.append(
                    {
                        "anonymous_id": user,
                        "name": "demo_signup",
                        "timestamp": datetime.now(UTC).isoformat(),
                    }
                )
        if pending:
            try:
                await api.post("/api/v2/ingest/rewards", {"events": pending})
                pending = []
            except LeveredError as exc:
                tally.errors.append(exc.message)
        if time.monotonic() - last_train > 10:
            last_train = time.monotonic()
            await _train(api, optimization_id, tally)
        await anyio.sleep(max(0.0, 0.25 - (time.monotonic() - tick)))


async def _train(api: LeveredAPI, optimization_id: str, tally: Tally) -> None:
    try:
        optimization = await api.get(f"/api/v2/optimizations/{optimization_id}")
        model_id = (optimization.get("model") or {}).get("id")
        if model_id:
            await api.post(f"/api/v2/models/{model_id}/train")
            tally.trainings += 1
    except NotFound:
        pass  # a server without the models API: the scheduler trains instead
    except LeveredError as exc:
        tally.errors.append(exc.message)


def _start_server(port: int) -> tuple[subprocess.Popen[bytes], Path]:
    from levered.db.embedded_host import default_data_dir

    data_dir = Path(os.environ.get("LEVERED_DATA_DIR") or default_data_dir()) / "demo"
    env = dict(os.environ) | {
        "LEVERED_DATA_DIR": str(data_dir),
        "LEVERED_PORT": str(port),
        "LEVERED_LOG_LEVEL": "warning",
    }
    env.pop("LEVERED_DATABASE_URL", None)
    log = data_dir.parent / "demo-server.log"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.app", "server", "start"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"the demo server exited; see {log}", EXIT_UNAVAILABLE)
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process, data_dir
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    fail(f"the demo server did not become ready; see {log}", EXIT_UNAVAILABLE)


def _demo_key(data_dir: Path) -> str:
    for line in (data_dir / "initial-credentials").read_text().splitlines():
        if line.startswith("api_key="):
            return line.split("=", 1)[1]
    fail(f"no API key in {data_dir / 'initial-credentials'}", EXIT_UNAVAILABLE)


def demo(
    *,
    api_url_flag: ApiUrlFlag = None,
    users_per_second: Annotated[float, Parameter(help="Simulated arrivals per second.")] = 40.0,
    duration: Annotated[
        float | None,
        Parameter(help="Stop after this many seconds (default: when the dashboard closes)."),
    ] = None,
    no_dashboard: Annotated[bool, Parameter(negative="", help="Only simulate.")] = False,
    json: JsonFlag = False,
) -> None:
    """Start a server (or use yours), create a demo optimization, simulate traffic, watch it."""
    key = os.environ.get("LEVERED_API_KEY")
    url = api_url(api_url_flag) if (api_url_flag or os.environ.get("LEVERED_API_URL")) else None
    server: subprocess.Popen[bytes] | None = None
    if url is None or key is None:
        from levered.db.embedded_host import free_port

        port = free_port()
        notice("starting a demo server (its own embedded database)…")
        server, data_dir = _start_server(port)
        url, key = f"http://127.0.0.1:{port}", _demo_key(data_dir)
    tally = Tally()
    stop = threading.Event()
    try:

        async def prepare() -> str:
            async with LeveredAPI(url, key) as api:
                return await setup(api)

        optimization_id = anyio.run(prepare)
        notice(f"demo optimization {optimization_id} on {url}: {users_per_second:g} users/s")

        def run_simulation() -> None:
            async def go() -> None:
                async with LeveredAPI(url, key) as api:
                    await simulate(
                        api,
                        optimization_id,
                        users_per_second=users_per_second,
                        seconds=duration,
                        stop=stop,
                        tally=tally,
                    )

            anyio.run(go)

        worker = threading.Thread(target=run_simulation, name="levered-demo", daemon=True)
        worker.start()
        if no_dashboard:
            worker.join()
        else:
            from tui.app import DashboardApp

            DashboardApp(url, key, refresh_seconds=2).run()
            stop.set()
            worker.join(10)
    finally:
        stop.set()
        if server is not None:
            server.send_signal(signal.SIGINT)
            server.wait(60)
    summary = {
        "api_url": url,
        "optimization_id": optimization_id,
        "served": tally.served,
        "conversions": tally.conversions,
        "trainings": tally.trainings,
        "errors": tally.errors[:5],
    }
    if json:
        emit_json(summary)
    else:
        notice(
            f"served {tally.served} users, {tally.conversions} conversions, "
            f"{tally.trainings} trainings"
            + (f"; errors: {tally.errors[:3]}" if tally.errors else "")
        )
