"""``levered optimizations guardrails|progress|lift-history|report-data``: the analysis
surfaces of one optimization (docs/analysis.md), registered on the optimizations sub-app so
cli/optimizations.py stays about the resource itself."""

from __future__ import annotations

from typing import Any

from cli.console import notice
from cli.flags import ApiUrlFlag, JsonFlag
from cli.optimizations import app
from cli.output import emit_json, emit_table
from cli.session import call


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{ci[0]:+.2f}%, {ci[1]:+.2f}%]"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}%"


@app.command
def guardrails(
    optimization_id: str, *, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False
) -> None:
    """Judge each guardrail metric optimized vs holdout: ok, violated or pending.

    A violated guardrail with auto_pause pauses a live optimization (the reason is shown).
    """
    body = call(
        lambda api: api.get(f"/api/v2/optimizations/{optimization_id}/guardrails"),
        url_flag=api_url_flag,
    )
    if json:
        emit_json(body)
        return
    print_guardrails(body)


def print_guardrails(body: dict[str, Any]) -> None:
    if body.get("paused"):
        notice("this evaluation paused the optimization")
    reason = body.get("status_reason")
    notice(f"status: {body['status']}" + (f" ({reason['message']})" if reason else ""))
    if not body["guardrails"]:
        notice(
            'no guardrails; add them with PATCH /api/v2/optimizations/{id} {"guardrails": [...]}'
        )
        return
    emit_table(
        ["metric", "direction", "tolerance", "status", "change", "95% ci", "users o/h", "reason"],
        [
            [
                g.get("metric_name") or g["metric_id"],
                g["direction"],
                f"{g['tolerance_percent']:g}%",
                g["status"] + (" (auto-pause)" if g["auto_pause"] else ""),
                _pct(g.get("change_percent")),
                _ci(g.get("ci")),
                f"{g['optimized_users']}/{g['holdout_users']}",
                g["reason"],
            ]
            for g in body["guardrails"]
        ],
    )
