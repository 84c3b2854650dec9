"""The overview's warehouse line: which connected warehouse the organization reads, and whether
it answers.

Shown only for a connected warehouse (a user's PostgreSQL or ClickHouse, and the table of
their own exposures when training reads one): the managed one is
Levered's own database, whose failures the status line already reports. The health comes from
``GET /api/v2/warehouse``, which runs a query on the warehouse as the organization — for a
connected one a catalog listing, no counting — so asking it every refresh costs the warehouse
one small query. When it does not answer, the line says what the product does about it:
training waits (each pass fails with ``warehouse_unavailable``) and serving goes on with every
optimization's last trained model.
"""

from __future__ import annotations

from typing import Any

from textual.markup import escape

from levered.client.api import LeveredAPI
from levered.errors import LeveredError


def warehouse_line(status: dict[str, Any] | None) -> str:
    """Markup for ``status`` (``GET /api/v2/warehouse``); empty for the managed warehouse or
    when there is nothing to say."""
    if not status or status.get("provider") in (None, "", "managed"):
        return ""
    name = escape(f"{status['provider']} {status.get('dataset_id') or ''}".strip())
    connection = status.get("connection") or {}
    where = connection.get("url") or (
        f"{connection.get('host')}:{connection.get('port')}/{connection.get('database')}"
        if connection.get("host")
        else ""
    )
    at = f" at {escape(where)}" if where else ""
    exposures = status.get("exposures")
    reads = f", exposures from your table {escape(exposures['table'])}" if exposures else ""
    if status.get("healthy"):
        return f"warehouse: {name}{at}{reads} [green]answering[/green]"
    error = escape(status.get("error") or "no answer")
    return (
        f"[bold red]warehouse: {name}{at}{reads} is not answering[/bold red]: {error}\n"
        "Training waits until it answers; serving goes on with each optimization's last model."
    )


async def fetch_warehouse_line(api: LeveredAPI) -> str:
    """:func:`warehouse_line` for the caller's organization; empty when the caller may not see
    the warehouse (a key without that scope) or the request failed (the status line reports a
    server that is gone)."""
    try:
        me = await api.get("/api/v2/me")
        provider = (me.get("organization") or {}).get("warehouse_provider")
        if provider in (None, "managed"):
            return ""  # not asked: the managed warehouse's status counts every table's rows
        return warehouse_line(await api.get("/api/v2/warehouse"))
    except LeveredError:
        return ""
