"""HTTP load for benchmarks: ``wrk`` when installed (apt-get install wrk), else a Python
generator. Both report requests/s and latency percentiles; always compare ratios measured
with the same generator in the same run, never absolute figures across machines."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class Load:
    tool: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


WRK_POST_LUA = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
{headers}
"""


def run_load(
    url: str,
    *,
    seconds: float = 10,
    connections: int = 64,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    prefer_wrk: bool = True,
) -> Load:
    if prefer_wrk and shutil.which("wrk"):
        return _wrk(url, seconds, connections, body, headers or {})
    return asyncio.run(_python(url, seconds, connections, body, headers or {}))


def _wrk(
    url: str, seconds: float, connections: int, body: str | None, headers: dict[str, str]
) -> Load:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    with tempfile.TemporaryDirectory() as tmp:
        if body is not None:
            script = Path(tmp) / "post.lua"
            lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
            script.write_text(WRK_POST_LUA.format(body=body, headers=lines))
            argv += ["-s", str(script)]
        else:
            for key, value in headers.items():
                argv += ["-H", f"{key}: {value}"]
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> Load:
    """Requests/s, p50/p99 (``--latency``) and errors from wrk's report."""
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no Requests/sec line:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|errors: \w+ )(\d+)", out))
    return Load("wrk", float(found.group(1)), _wrk_ms(out, "50%"), _wrk_ms(out, "99%"), errors)


def _wrk_ms(out: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", out)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def _python(
    url: str, seconds: float, connections: int, body: str | None, headers: dict[str, str]
) -> Load:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                if body is None:
                    response = await client.get(url, headers=headers)
                else:
                    response = await client.post(
                        url, content=body, headers={"content-type": "application/json", **headers}
                    )
                latencies.append(time.perf_counter() - started)
                errors += response.status_code >= 300

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return Load(
        "python-httpx",
        len(latencies) / elapsed,
        _quantile_ms(latencies, 0.5),
        _quantile_ms(latencies, 0.99),
        errors,
    )


def _quantile_ms(sorted_seconds: list[float], q: float) -> float:
    return sorted_seconds[min(len(sorted_seconds) - 1, int(q * len(sorted_seconds)))] * 1000
