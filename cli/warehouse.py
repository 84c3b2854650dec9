"""``levered warehouse connect|status|exposures|tables|columns|preview|query``: the warehouse.

``connect postgres`` and ``connect clickhouse`` take the password from ``--password-stdin``,
else ``LEVERED_WAREHOUSE_PASSWORD``, else a prompt on a terminal, never from a flag (it would
stay in the shell history and in ``ps``). A ``chdb://`` URL has no password and is never
prompted for one.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter

from cli.console import EXIT_USAGE, fail, notice
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


def show_status(body: dict[str, Any], json: bool) -> None:
    if json:
        emit_json(body)
        return
    notice(f"provider: {body['provider']}  healthy: {body['healthy']}")
    connection = body.get("connection")
    if connection and connection.get("url"):
        notice(
            f"connected: {connection['url']}  database: {body.get('dataset_id')}  "
            f"user: {connection['username']}  tested: {connection['tested_at']}"
        )
    elif connection:
        notice(
            f"connected: {connection['username']}@{connection['host']}:{connection['port']}/"
            f"{connection['database']}  schema: {body.get('dataset_id')}  "
            f"sslmode: {connection['sslmode']}  tested: {connection['tested_at']}"
        )
    if body.get("error"):
        notice(f"error: {body['error']}")
    for warning in body.get("warnings") or []:
        notice(f"warning: {warning}")
    if exposures := body.get("exposures"):
        mapped = ", ".join(f"{k}={v}" for k, v in exposures["columns"].items() if v)
        notice(f"exposures: your table {exposures['table']} ({mapped})")
    elif connection:
        notice("exposures: the ones Levered records (served, or sent to the ingestion API)")
    emit_table(["table", "rows"], [[t["name"], t.get("rows")] for t in body["tables"]])


@app.command
def status(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """Show the warehouse: provider, connection (never its password), health and tables."""
    show_status(call(lambda api: api.get("/api/v2/warehouse"), url_flag=api_url_flag), json)


@app.command
def connect(
    provider: Literal["postgres", "clickhouse", "managed"],
    *,
    url: Annotated[
        str | None,
        Parameter(help="clickhouse: http(s)://host:port, or chdb:///path on the server."),
    ] = None,
    host: Annotated[str | None, Parameter(help="postgres: the server's host name.")] = None,
    port: Annotated[int, Parameter(help="postgres: the server's port.")] = 5432,
    database: Annotated[
        str | None, Parameter(help="postgres: the database; clickhouse: the database to read.")
    ] = None,
    username: Annotated[
        str | None, Parameter(help="A read-only account (clickhouse: `default`).")
    ] = None,
    schema: Annotated[
        str | None, Parameter(help="postgres: the schema with your tables (dataset_id).")
    ] = None,
    sslmode: Annotated[
        Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        Parameter(help="postgres: TLS mode, as libpq's sslmode."),
    ] = "prefer",
    password_stdin: Annotated[
        bool, Parameter(negative="", help="Read the password from the first line of stdin.")
    ] = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Connect your own PostgreSQL or ClickHouse (tested before it is stored), or go back to
    `managed`."""
    if provider == "managed":
        body: dict[str, Any] = {"provider": "managed"}
    elif provider == "clickhouse":
        missing = [f"--{n}" for n, v in (("url", url), ("database", database)) if not v]
        if missing:
            fail(f"connect clickhouse needs {', '.join(missing)}", EXIT_USAGE)
        credentials: dict[str, Any] = {"url": url, "username": username or "default"}
        if not (url or "").startswith("chdb://"):
            credentials["password"] = _password(password_stdin)
        body = {"provider": "clickhouse", "dataset_id": database, "credentials": credentials}
    else:
        missing = [
            f"--{name}"
            for name, value in (
                ("host", host),
                ("database", database),
                ("username", username),
                ("schema", schema),
            )
            if not value
        ]
        if missing:
            fail(f"connect postgres needs {', '.join(missing)}", EXIT_USAGE)
        body = {
            "provider": "postgres",
            "dataset_id": schema,
            "credentials": {
                "host": host,
                "port": port,
                "database": database,
                "username": username,
                "password": _password(password_stdin),
                "sslmode": sslmode,
            },
        }
    show_status(call(lambda api: api.put("/api/v2/warehouse", body), url_flag=api_url_flag), json)


exposures = App(
    name="exposures",
    help="Count exposures from a table of your own in the connected PostgreSQL, or not.",
)
app.command(exposures)


@exposures.command(name="set")
def set_exposures(
    table: Annotated[str, Parameter(help="A table or view of the connected schema.")],
    *,
    anonymous_id: Annotated[str, Parameter(help="The user (as your metrics' id column).")],
    optimization_id: Annotated[str, Parameter(help="The optimization id (uuid or text).")],
    variant: Annotated[
        str, Parameter(help="A JSON object of factor → level, or the variant number.")
    ],
    timestamp: Annotated[str, Parameter(help="When it was shown (timestamptz, timestamp, date).")],
    context: Annotated[str | None, Parameter(help="A JSON object of context values.")] = None,
    holdout: Annotated[
        str | None, Parameter(help="boolean, true for holdout users (none: no measured lift).")
    ] = None,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Read exposures from TABLE from now on, inside your database (checked first); the next
    training of each optimization rebuilds its cells from that table."""
    columns = {
        "anonymous_id": anonymous_id,
        "optimization_id": optimization_id,
        "variant": variant,
        "timestamp": timestamp,
        "context": context,
        "holdout": holdout,
    }
    body = {"table": table, "columns": {k: v for k, v in columns.items() if v is not None}}
    show_status(
        call(lambda api: api.put("/api/v2/warehouse/exposures", body), url_flag=api_url_flag), json
    )


@exposures.command(name="clear")
def clear_exposures(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """Count the exposures Levered records again (the next training rebuilds the cells)."""
    show_status(
        call(lambda api: api.delete("/api/v2/warehouse/exposures"), url_flag=api_url_flag), json
    )


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if "LEVERED_WAREHOUSE_PASSWORD" in os.environ:
        return os.environ["LEVERED_WAREHOUSE_PASSWORD"]
    if sys.stdin.isatty():
        return getpass.getpass("warehouse password: ")
    return ""


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
