"""``levered optimizations …``: create, inspect and move optimizations through their lifecycle."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from cyclopts import App, Parameter

from cli.console import EXIT_USAGE, confirm, fail, notice
from cli.flags import ApiUrlFlag, JsonFlag, YesFlag
from cli.output import emit_json, emit_table
from cli.session import call

app = App(name="optimizations", help="Create, manage, and inspect optimizations.")

Status = Literal["live", "paused", "shipped", "completed", "archived"]
GUARDRAILS_HELP = (
    'JSON array of guardrails, e.g. \'[{"metric_id": "…", "direction": "must_not_increase", '
    '"tolerance_percent": 5, "auto_pause": true}]\' (replaces the list; docs/analysis.md).'
)
DIMENSIONS_HELP = (
    "Comma-separated context keys to break results down by without modeling them, e.g. "
    "platform,plan ('' clears; replaces the list; the next training pass rebuilds the cells)."
)


def _names(raw: str) -> list[str]:
    """``a,b`` as ``["a", "b"]`` (blanks dropped: ``''`` is the empty list)."""
    return [name.strip() for name in raw.split(",") if name.strip()]


def _json_flag(flag: str, raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        fail(f"{flag} is not valid JSON: {exc}", EXIT_USAGE)


@app.command(name="list")
def list_(
    *,
    limit: Annotated[int, Parameter(help="At most this many (1–100).")] = 10,
    include_archived: Annotated[bool, Parameter(negative="")] = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """List optimizations in the current organization, newest first."""
    body = call(
        lambda api: api.get(
            "/api/v2/optimizations", {"limit": limit, "include_archived": include_archived}
        ),
        url_flag=api_url_flag,
    )
    if json:
        emit_json(body)
        return
    emit_table(
        ["id", "name", "status", "model", "variants", "exposures", "lift", "created_at"],
        [
            [
                o["id"],
                o["name"],
                o["status"],
                o["model_type"],
                o.get("variants_count"),
                (o.get("summary") or {}).get("exposures"),
                _lift_cell(o.get("summary") or {}),
                o["created_at"],
            ]
            for o in body["optimizations"]
        ],
    )
    if not body["optimizations"]:
        notice("no optimizations yet: create one with `levered optimizations create`")


def _lift_cell(summary: dict[str, Any]) -> str:
    """The last training's lift in percent; ``~`` marks one modeled, not yet measured against
    the holdout (as in the dashboard). ``--json`` has the number, its interval and source."""
    lift = summary.get("lift")
    if not isinstance(lift, (int, float)):
        return "-"
    return ("" if summary.get("lift_source") == "measured" else "~") + f"{lift:+,.1f}%"


@app.command
def show(optimization_id: str, *, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """Print full details for a single optimization."""
    body = call(
        lambda api: api.get(f"/api/v2/optimizations/{optimization_id}"), url_flag=api_url_flag
    )
    if json:
        emit_json(body)
        return
    _print_details(body)


def _print_details(o: dict[str, Any]) -> None:
    metric = o.get("reward_metric") or {}
    model = o.get("model") or {}
    attribution = o.get("attribution") or {}
    rows: list[list[Any]] = [
        ["id", o["id"]],
        ["name", o["name"]],
        ["status", o["status"]],
        ["model_type", o["model_type"]],
        ["model", f"{model.get('status', '-')} (version {model.get('current_version') or '-'})"],
        # The id `levered models train` takes: without it here a user had no way to find it.
        ["model_id", model.get("id") or "-"],
        ["reward_metric", f"{metric.get('name', '-')} ({o.get('reward_metric_id')})"],
        ["variants", o.get("variants_count")],
        ["holdout_percentage", o["holdout_percentage"]],
        ["conversion_window_hours", attribution.get("conversion_window_hours")],
        ["sticky", o.get("sticky")],
        ["created_at", o.get("created_at")],
    ]
    for factor in o.get("design_factors", []):
        rows.append([f"design: {factor['name']}", ", ".join(map(str, factor["levels"]))])
    for factor in o.get("context_factors", []):
        rows.append(
            [
                f"context: {factor['name']}",
                ", ".join(map(str, factor.get("levels") or [])) or "(any value)",
            ]
        )
    if o.get("dimensions"):
        rows.append(["dimensions", ", ".join(o["dimensions"])])
    for rule in o.get("excluded_combinations", []):
        rows.append(["excluded", msgspec.json.encode(rule).decode()])
    for g in o.get("guardrails", []):
        pause = ", auto-pause" if g.get("auto_pause") else ""
        rows.append(
            [
                "guardrail",
                f"{g['metric_id']} {g['direction']} ±{g['tolerance_percent']:g}%{pause}",
            ]
        )
    if o.get("status_reason"):
        rows.append(["status_reason", o["status_reason"]["message"]])
    emit_table(["field", "value"], rows)


@app.command
def create(
    *,
    name: Annotated[str, Parameter(help="Human-readable name.")],
    design_factors: Annotated[str, Parameter(help="JSON array of factors and levels.")],
    reward_metric_id: Annotated[str, Parameter(help="UUID of the reward metric.")],
    model_type: Literal["cmab", "mab"] = "cmab",
    context_factors: Annotated[
        str | None, Parameter(help="JSON array of context factors (e.g. country, device).")
    ] = None,
    holdout_percentage: float | None = None,
    conversion_window_hours: float | None = None,
    excluded_combinations: Annotated[
        str | None, Parameter(help="JSON array of partial factor→level maps never to serve.")
    ] = None,
    sticky: bool = True,
    draft: Annotated[bool, Parameter(negative="", help="Create as draft.")] = False,
    guardrails: Annotated[str | None, Parameter(help=GUARDRAILS_HELP)] = None,
    dimensions: Annotated[str | None, Parameter(help=DIMENSIONS_HELP)] = None,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Create a new optimization (live unless --draft)."""
    body: dict[str, Any] = {
        "name": name,
        "design_factors": _json_flag("--design-factors", design_factors),
        "reward_metric_id": reward_metric_id,
        "model_type": model_type,
        "sticky": sticky,
        "draft": draft,
    }
    if context_factors is not None:
        body["context_factors"] = _json_flag("--context-factors", context_factors)
    if excluded_combinations is not None:
        body["excluded_combinations"] = _json_flag("--excluded-combinations", excluded_combinations)
    if guardrails is not None:
        body["guardrails"] = _json_flag("--guardrails", guardrails)
    if dimensions is not None:
        body["dimensions"] = _names(dimensions)
    if holdout_percentage is not None:
        body["holdout_percentage"] = holdout_percentage
    if conversion_window_hours is not None:
        body["attribution"] = {
            "type": "last_touch",
            "conversion_window_hours": conversion_window_hours,
        }
    created = call(lambda api: api.post("/api/v2/optimizations", body), url_flag=api_url_flag)
    if json:
        emit_json(created)
    else:
        _print_details(created)


@app.command
def update(
    optimization_id: str,
    *,
    status: Status | None = None,
    name: str | None = None,
    window_days: Annotated[
        float | None,
        Parameter(help="Train on the exposures of the last N days only (N > 0)."),
    ] = None,
    half_life_days: Annotated[
        float | None,
        Parameter(help="Train on all history, each hour weighted 0.5^(age / H days)."),
    ] = None,
    all_history: Annotated[
        bool, Parameter(negative="", help="Train on all history (the default window).")
    ] = False,
    holdout_percentage: Annotated[
        float | None, Parameter(help="Share of users kept on the baseline (0–50).")
    ] = None,
    excluded_combinations: Annotated[
        str | None, Parameter(help="JSON array of partial factor→level maps never to serve.")
    ] = None,
    conversion_window_hours: float | None = None,
    reward_metric_id: str | None = None,
    sticky: bool | None = None,
    design_factors: Annotated[
        str | None, Parameter(help="JSON array of factors and levels (drafts only).")
    ] = None,
    context_factors: Annotated[
        str | None, Parameter(help="JSON array of context factors (drafts only).")
    ] = None,
    model_type: Annotated[
        Literal["cmab", "mab"] | None, Parameter(help="Model type (drafts only).")
    ] = None,
    guardrails: Annotated[str | None, Parameter(help=GUARDRAILS_HELP)] = None,
    dimensions: Annotated[str | None, Parameter(help=DIMENSIONS_HELP)] = None,
    yes: YesFlag = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Change an optimization: name, status, training window, holdout, exclusions, metric,
    attribution window, stickiness; design and context factors and model type while a draft
    (the server answers 409 otherwise).

    ``--status completed`` (or ``archived``) is final, so it prompts unless -y, like ``stop``.
    """
    body: dict[str, Any] = {
        k: v for k, v in {"status": status, "name": name}.items() if v is not None
    }
    windows = [
        w
        for w, given in (
            ({"type": "days", "days": window_days}, window_days is not None),
            ({"type": "decay", "half_life_days": half_life_days}, half_life_days is not None),
            ({"type": "all"}, all_history),
        )
        if given
    ]
    settings: dict[str, Any] = {
        "holdout_percentage": holdout_percentage,
        "reward_metric_id": reward_metric_id,
        "sticky": sticky,
        "model_type": model_type,
    }
    body |= {k: v for k, v in settings.items() if v is not None}
    for key, flag, raw in (
        ("excluded_combinations", "--excluded-combinations", excluded_combinations),
        ("design_factors", "--design-factors", design_factors),
        ("context_factors", "--context-factors", context_factors),
        ("guardrails", "--guardrails", guardrails),
    ):
        if raw is not None:
            body[key] = _json_flag(flag, raw)
    if dimensions is not None:
        body["dimensions"] = _names(dimensions)
    if conversion_window_hours is not None:
        body["attribution"] = {
            "type": "last_touch",
            "conversion_window_hours": conversion_window_hours,
        }
    if len(windows) > 1:
        fail("--window-days, --half-life-days and --all-history exclude each other", EXIT_USAGE)
    if windows:
        body["training_window"] = windows[0]
    if not body:
        fail(
            "nothing to update: pass --status, --name, a training window, --holdout-percentage, "
            "--excluded-combinations or another setting (see --help)",
            EXIT_USAGE,
        )
    if status in ("completed", "archived"):
        confirm(f"Move optimization {optimization_id} to {status}? This is final.", yes)
    _patch(optimization_id, body, api_url_flag, json)


def _patch(optimization_id: str, body: dict[str, Any], url: str | None, json: bool) -> None:
    updated = call(
        lambda api: api.patch(f"/api/v2/optimizations/{optimization_id}", body), url_flag=url
    )
    if json:
        emit_json(updated)
    else:
        notice(f"{updated['name']}: {updated['status']}")


def _transition(status: Status, doc: str) -> Any:
    def command(
        optimization_id: str, *, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False
    ) -> None:
        _patch(optimization_id, {"status": status}, api_url_flag, json)

    command.__doc__ = doc
    return command


app.command(
    _transition("paused", "Pause: serve the baseline to everyone, stop learning."), name="pause"
)
app.command(
    _transition("live", "Resume a paused (or un-ship a shipped) optimization."), name="resume"
)
app.command(
    _transition("shipped", "Ship: serve the current winner per context, no exploring."), name="ship"
)


def _final_transition(status: Status, question: str, doc: str) -> Any:
    """A command for a final status: it asks ``question`` first, unless ``-y``."""

    def command(
        optimization_id: str,
        *,
        yes: YesFlag = False,
        api_url_flag: ApiUrlFlag = None,
        json: JsonFlag = False,
    ) -> None:
        confirm(question.format(id=optimization_id), yes)
        _patch(optimization_id, {"status": status}, api_url_flag, json)

    command.__doc__ = doc
    return command


app.command(
    _final_transition(
        "completed",
        "Stop optimization {id}? Completed is final.",
        "Stop for good (completed is final). Prompts unless -y.",
    ),
    name="stop",
)
app.command(
    _final_transition(
        "archived",
        "Archive optimization {id}? This is final.",
        "Archive an optimization (final). Prompts unless -y.",
    ),
    name="archive",
)


@app.command
def delete(
    optimization_id: str,
    *,
    yes: YesFlag = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Delete a draft optimization. Prompts unless -y."""
    confirm(f"Delete draft optimization {optimization_id}?", yes)
    body = call(
        lambda api: api.delete(f"/api/v2/optimizations/{optimization_id}"), url_flag=api_url_flag
    )
    if json:
        emit_json(body or {"deleted": optimization_id})
    else:
        notice(f"deleted {optimization_id}")


@app.command
def observations(
    optimization_id: str,
    *,
    page: int = 1,
    size: int = 20,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Page through matured exposures joined to their attributed reward."""
    body = call(
        lambda api: api.get(
            f"/api/v2/optimizations/{optimization_id}/observations", {"page": page, "size": size}
        ),
        url_flag=api_url_flag,
    )
    if json:
        emit_json(body)
        return
    emit_table(
        ["anonymous_id", "variant", "context", "timestamp", "holdout", "reward"],
        [
            [
                o["anonymous_id"],
                o["variant_number"],
                msgspec.json.encode(o.get("context") or {}).decode(),
                o["timestamp"],
                o["holdout"],
                o["reward"],
            ]
            for o in body["observations"]
        ],
    )
    notice(
        f"page {body['page']} · {len(body['observations'])} of {body['total']} matured "
        f"observations · {body.get('pending', 0)} pending"
    )


@app.command
def results(
    optimization_id: str,
    *,
    limit: int = 20,
    context: Annotated[
        str | None, Parameter(help="""Posterior for one context, e.g. '{"device": "mobile"}'.""")
    ] = None,
    dimension: Annotated[
        str | None, Parameter(help="A context factor: rates and intervals per value of it.")
    ] = None,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Print results: lift over the holdout, expected reward per variant, factor importance."""
    _json_flag("--context", context)
    body = call(
        lambda api: api.get(
            f"/api/v2/optimizations/{optimization_id}/results",
            {"limit": limit, "context": context, "dimension": dimension},
        ),
        url_flag=api_url_flag,
    )
    if json:
        emit_json(body)
        return
    _print_results(body)


def _interval(value: dict[str, Any] | None, fmt: str = "{:.4f}") -> str:
    if not value or value.get("mean") is None:
        return "-"
    return f"{fmt.format(value['mean'])} [{fmt.format(value['lo'])}, {fmt.format(value['hi'])}]"


def _print_results(body: dict[str, Any]) -> None:
    if body.get("note"):
        notice(body["note"])
    if body.get("data_through"):
        notice(f"counts: exposures through {body['data_through']} (as of {body.get('as_of')})")
    lift = body.get("measured_lift") or {}
    if lift:
        ci, p_value, percent = lift.get("ci"), lift.get("p_value"), lift.get("lift_percent")
        ci_text = (
            f"95% CI [{ci[0]:+.2f}%, {ci[1]:+.2f}%]"
            + ("" if p_value is None else f", p = {p_value:.3g}")
            if ci
            else "interval once both arms have 100 users"
        )
        # No estimate (no users yet, or a holdout rate of 0) is shown as "-", never as +0 %.
        shown = "-" if percent is None else f"{percent:+.2f}%"
        notice(
            f"measured lift vs holdout: {shown} ({ci_text}); "
            f"users {lift.get('optimized_users')} optimized / {lift.get('holdout_users')} "
            "holdout"
        )
    modeled = body.get("modeled") or {}
    if modeled:
        notice(
            f"modeled improvement vs baseline: "
            f"{_interval(modeled.get('estimated_improvement_percent'), '{:+.2f}%')}; best vs "
            f"baseline {_interval(modeled.get('best_vs_baseline_percent'), '{:+.2f}%')}; "
            f"progress {modeled.get('estimated_progress') or 0:.0%}"
        )
    emit_table(
        ["number", "variant", "exposures", "rate", "expected_reward", "prob_best", "weight"],
        [
            [
                v["number"],
                " / ".join(map(str, (v.get("variant") or {}).values())),
                v.get("exposures"),
                v.get("rate"),
                _interval(v.get("expected_reward")),
                v.get("prob_best"),
                v.get("weight"),
            ]
            for v in body.get("variants", [])
        ],
    )
    mixes = [v for v in body.get("variants", []) if v.get("outcomes")]
    if mixes:  # a weighted metric: what each variant's exposures ended in
        emit_table(
            ["number", "outcome", "weight", "exposures", "share"],
            [
                [v["number"], o["key"], o["weight"], o["exposures"], o.get("share")]
                for v in mixes
                for o in v["outcomes"]
            ],
        )
    breakdown = body.get("dimension")
    if breakdown:
        emit_table(
            [breakdown["name"], "exposures", "optimized rate", "holdout rate", "lift", "lift ci"],
            [
                [
                    d["value"],
                    d["exposures"],
                    d["optimized"]["rate"],
                    d["holdout"]["rate"],
                    d.get("lift_percent"),
                    d.get("lift_ci"),
                ]
                for d in breakdown["values"]
            ],
        )
    factors = body.get("factor_importance") or []
    if factors:
        emit_table(
            ["factor", "importance", "q1", "q3"],
            [[f["name"], f.get("mean"), f.get("q1"), f.get("q3")] for f in factors],
        )
