"""``levered metrics list|show|create|preview|delete``: what counts as success."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from cyclopts import App, Parameter

from cli.console import EXIT_USAGE, confirm, fail, notice
from cli.flags import ApiUrlFlag, JsonFlag, YesFlag
from cli.output import emit_json, emit_table
from cli.session import call

app = App(name="metrics", help="Define reward metrics: what counts as a successful outcome.")

OUTCOMES_HELP = (
    "JSON array of ≥ 2 mutually exclusive outcomes, making the metric weighted, e.g. "
    '\'[{"key": "purchase", "weight": 1, "match": {"by": "name", "value": "purchase"}}, '
    '{"key": "signup", "weight": 0.2, "match": {"by": "name", "value": "signup"}}]\' '
    "(rows matching none are 'failure', weight 0; docs/warehouse.md)."
)


def _rows(metrics: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            m["id"],
            m["name"],
            m["reward_type"],
            m["anonymous_id_col"],
            m["timestamp_col"],
            m.get("value_col"),
            m["created_at"],
        ]
        for m in metrics
    ]


HEADERS = [
    "id",
    "name",
    "reward_type",
    "anonymous_id_col",
    "timestamp_col",
    "value_col",
    "created_at",
]


@app.command(name="list")
def list_(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """List metrics, newest first."""
    body = call(lambda api: api.get("/api/v2/metrics"), url_flag=api_url_flag)
    if json:
        emit_json(body)
    else:
        emit_table(HEADERS, _rows(body["metrics"]))
        if not body["metrics"]:
            notice("no metrics yet: create one with `levered metrics create`")


@app.command
def show(metric_id: str, *, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """Show one metric with its SQL."""
    body = call(lambda api: api.get(f"/api/v2/metrics/{metric_id}"), url_flag=api_url_flag)
    if json:
        emit_json(body)
        return
    emit_table(HEADERS, _rows([body]))
    notice(f"sql: {body['sql']}")
    if body.get("outcomes"):
        notice(f"name_col: {body.get('name_col')}")
        emit_table(
            ["outcome", "weight", "match by", "value"],
            [
                [o["key"], o["weight"], o["match"]["by"], o["match"]["value"]]
                for o in body["outcomes"]
            ],
        )


@app.command
def create(
    *,
    name: Annotated[str, Parameter(help="Human-readable metric name.")],
    sql: Annotated[
        str, Parameter(help="SQL returning reward events; @start_date is bound at training time.")
    ],
    anonymous_id_col: Annotated[str, Parameter(help="Column identifying the user.")],
    timestamp_col: Annotated[str, Parameter(help="Column with the event time.")],
    value_col: Annotated[str | None, Parameter(help="Numeric reward column.")] = None,
    reward_type: Literal["bool", "numeric", "weighted"] | None = None,
    outcomes: Annotated[str | None, Parameter(help=OUTCOMES_HELP)] = None,
    name_col: Annotated[
        str | None, Parameter(help="Column that outcomes matched by name compare.")
    ] = None,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Create a metric; its SQL is dry-run as your organization before it is saved."""
    body: dict[str, Any] = {
        "name": name,
        "sql": sql,
        "anonymous_id_col": anonymous_id_col,
        "timestamp_col": timestamp_col,
    }
    if value_col is not None:
        body["value_col"] = value_col
    if reward_type is not None:
        body["reward_type"] = reward_type
    if outcomes is not None:
        try:
            body["outcomes"] = msgspec.json.decode(outcomes)
        except msgspec.DecodeError as exc:
            fail(f"--outcomes is not valid JSON: {exc}", EXIT_USAGE)
    if name_col is not None:
        body["name_col"] = name_col
    created = call(lambda api: api.post("/api/v2/metrics", body), url_flag=api_url_flag)
    if json:
        emit_json(created)
    else:
        emit_table(HEADERS, _rows([created]))


@app.command
def preview(
    metric_id: str,
    *,
    limit: Annotated[
        int, Parameter(name=["--limit", "-n"], help="How many rows (newest first).")
    ] = 10,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Run the metric's SQL and display a sample of matching rows."""
    body = call(
        lambda api: api.get(f"/api/v2/metrics/{metric_id}/preview", {"limit": limit}),
        url_flag=api_url_flag,
    )
    if json:
        emit_json(body)
        return
    emit_table(
        ["anonymous_id", "timestamp", "value"],
        [[r["anonymous_id"], r["timestamp"], r["value"]] for r in body["rows"]],
    )
    notice(f"{body['row_count']} row(s)" + (" (truncated)" if body.get("truncated") else ""))


@app.command
def delete(
    metric_id: str, *, yes: YesFlag = False, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False
) -> None:
    """Delete a metric (refused while an optimization uses it). Prompts unless -y."""
    confirm(f"Delete metric {metric_id}?", yes)
    body = call(lambda api: api.delete(f"/api/v2/metrics/{metric_id}"), url_flag=api_url_flag)
    if json:
        emit_json(body)
    else:
        notice(f"deleted metric {metric_id}")
