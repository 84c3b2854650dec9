"""``levered warehouse status|tables|columns|preview|query``: explore the warehouse."""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import App, Parameter

from cli.console import notice
from cli.flags import ApiUrlFlag, JsonFlag
from cli.output import emit_json, emit_table
from cli.session import call

app = App(name="warehouse", help="Inspect and query your data warehouse.")

Rows = Annotated[int, Parameter(name=["-n", "--n"], help="How many rows.")]


def emit_result(body: dict[str, Any], json: bool) -> None:
    """Print a query result: a table of its columns, and a note when it was truncated."""
    if json:
        emit_json(body)
        return
    emit_table([c["name"] for c in body["columns"]], body["rows"])
    more = " (truncated: more rows exist)" if body.get("truncated") else ""
    notice(f"{body['row_count']} row(s) in {body.get('elapsed_ms', 0):.0f} ms{more}")


@app.command
def status(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """Show the current warehouse connection status and provider."""
    body = call(lambda api: api.get("/api/v2/warehouse"), url_flag=api_url_flag)
    if json:
        emit_json(body)
        return
    notice(f"provider: {body['provider']}  healthy: {body['healthy']}")
    emit_table(["table", "rows"], [[t["name"], t.get("rows")] for t in body["tables"]])


@app.command
def tables(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """List all tables in the connected dataset/schema."""
    body = call(lambda api: api.get("/api/v2/warehouse/tables"), url_flag=api_url_flag)
    if json:
        emit_json(body)
    else:
        emit_table(
            ["table", "rows", "description"],
            [[t["name"], t.get("rows"), t.get("description")] for t in body["tables"]],
        )


@app.command
def columns(table: str, *, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """List column names and types for a table."""
    body = call(
        lambda api: api.get(f"/api/v2/warehouse/tables/{table}/columns"), url_flag=api_url_flag
    )
    if json:
        emit_json(body)
    else:
        emit_table(
            ["column", "type", "nullable", "description"],
            [[c["name"], c["type"], c["nullable"], c.get("description")] for c in body["columns"]],
        )


@app.command
def preview(
    table: str, *, n: Rows = 10, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False
) -> None:
    """Preview rows from a table."""
    body = call(
        lambda api: api.get(f"/api/v2/warehouse/tables/{table}/preview", {"n": n}),
        url_flag=api_url_flag,
    )
    emit_result(body, json)


@app.command
def query(
    sql: str, *, n: Rows = 100, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False
) -> None:
    """Run an arbitrary read-only SQL query."""
    body = call(
        lambda api: api.post("/api/v2/warehouse/query", {"sql": sql, "limit": n}),
        url_flag=api_url_flag,
    )
    emit_result(body, json)
