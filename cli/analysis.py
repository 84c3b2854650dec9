"""``levered optimizations guardrails|progress|lift-history|report-data``: the analysis
surfaces of one optimization (docs/analysis.md). :func:`register` adds them to the
optimizations sub-app (cli/app.py calls it), so cli/optimizations.py stays about the resource
itself."""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import App, Parameter

from cli.console import notice
from cli.flags import ApiUrlFlag, JsonFlag
from cli.output import emit_json, emit_table
from cli.session import call


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{ci[0]:+.2f}%, {ci[1]:+.2f}%]"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}%"


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


def progress(
    optimization_id: str,
    *,
    threshold: Annotated[
        float, Parameter(help="prob_best at which the leader counts as certain (0.5–1).")
    ] = 0.95,
    limit: Annotated[int, Parameter(help="At most this many arms (1–1000).")] = 20,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """How close the optimization is to a decision: days running, users and observations per
    arm, the leader's certainty and an expected time to decision."""
    body = call(
        lambda api: api.get(
            f"/api/v2/optimizations/{optimization_id}/progress",
            {"threshold": threshold, "limit": limit},
        ),
        url_flag=api_url_flag,
    )
    if json:
        emit_json(body)
        return
    print_progress(body)


def print_progress(body: dict[str, Any]) -> None:
    notice(
        f"{body['status']} for {body['days_running']:.1f} days; users "
        f"{body['optimized_users']} optimized / {body['holdout_users']} holdout"
    )
    if body.get("leader") is not None:
        notice(
            f"leader: variant {body['leader']}, prob_best {body['leader_prob_best']:.3f} of "
            f"{body['threshold']:g} needed ({body['certainty']:.0%} of the way)"
        )
    eta = body.get("expected_days_to_decision")
    rate = body.get("daily_observations")
    notice(
        ("decided" if body.get("decided") else f"expected days to decision: {eta:.1f}")
        if eta is not None
        else "expected days to decision: unknown"
    )
    notice(f"method: {body['method']}" + (f" (at {rate:.0f} observations/day)" if rate else ""))
    emit_table(
        ["number", "variant_key", "exposures", "prob_best"],
        [[a["number"], a["variant_key"], a["exposures"], a.get("prob_best")] for a in body["arms"]],
    )


def lift_history(
    optimization_id: str, *, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False
) -> None:
    """Measured lift vs the holdout per day of exposure: that day's users, and cumulative."""
    body = call(
        lambda api: api.get(f"/api/v2/optimizations/{optimization_id}/lift-history"),
        url_flag=api_url_flag,
    )
    if json:
        emit_json(body)
        return
    print_lift_history(body)


def print_lift_history(body: dict[str, Any]) -> None:
    if body.get("note"):
        notice(body["note"])
    emit_table(
        [
            "date",
            "daily lift",
            "daily 95% ci",
            "users o/h",
            "cumulative",
            "cum. 95% ci",
            "modeled",
            "modeled 95% ci",
        ],
        [
            [
                p["date"],
                _pct(p["daily"]["lift_percent"]),
                _ci(p["daily"]["ci"]),
                f"{p['daily']['optimized_users']}/{p['daily']['holdout_users']}",
                _pct(p["cumulative"]["lift_percent"]),
                _ci(p["cumulative"]["ci"]),
                _pct((p.get("modeled") or {}).get("percent")),
                _ci((p.get("modeled") or {}).get("ci")),
            ]
            for p in body["points"]
        ],
    )


def report_data(
    optimization_id: str,
    *,
    threshold: Annotated[
        float, Parameter(help="prob_best at which the leader counts as certain (0.5–1).")
    ] = 0.95,
    limit: Annotated[int, Parameter(help="At most this many variants (1–10000).")] = 100,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """One JSON document with results, guardrails, progress and lift history, for notebooks
    and reports (always JSON; ``--json`` is accepted for symmetry)."""
    body = call(
        lambda api: api.get(
            f"/api/v2/optimizations/{optimization_id}/report-data",
            {"threshold": threshold, "limit": limit},
        ),
        url_flag=api_url_flag,
    )
    emit_json(body)


def register(app: App) -> None:
    """Add the analysis commands to ``app`` (the optimizations sub-app)."""
    app.command(guardrails)
    app.command(progress)
    app.command(lift_history, name="lift-history")
    app.command(report_data, name="report-data")
