"""``levered db migrate|status``: the schema of the configured (or embedded) database.

Both say on stderr which database they looked at: the one this machine's settings name
(``LEVERED_DATABASE_URL``, else the embedded one in the data directory), not the server that
``LEVERED_API_URL`` points the other commands at.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from cyclopts import App

from cli.console import EXIT_ERROR, notice
from cli.flags import JsonFlag
from cli.output import emit_json, emit_table

if TYPE_CHECKING:
    import asyncpg

app = App(name="db", help="Inspect and migrate the database schema.")
T = TypeVar("T")


def _on_database(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """``work(connection)`` on this machine's database, opened (and closed) around it."""
    import anyio

    from levered.db.database import open_database
    from levered.db.pool import connect
    from levered.settings import load_settings

    async def run(url: str) -> T:
        conn = await connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    database = open_database(load_settings())
    notice(f"database: {database.describe()}")
    try:
        return anyio.run(run, database.url)
    finally:
        database.close()


@app.command
def migrate(*, json: JsonFlag = False) -> None:
    """Apply pending migrations (the server also does this at start)."""
    from levered.db import migrations

    async def apply(conn: asyncpg.Connection) -> list[str]:
        return [f"{m.version:04d}_{m.name}" for m in await migrations.migrate(conn)]

    applied = _on_database(apply)
    if json:
        emit_json({"applied": applied})
    else:
        notice(
            f"applied {len(applied)} migration(s)"
            + (": " + ", ".join(applied) if applied else "; the schema is current")
        )


@app.command
def status(*, json: JsonFlag = False) -> None:
    """List migrations with when each was applied; exit 1 if any is pending or edited."""
    from levered.db import migrations

    rows = _on_database(migrations.status)
    if json:
        emit_json(
            {
                "migrations": [
                    {
                        "version": r.version,
                        "name": r.name,
                        "applied_at": r.applied_at.isoformat() if r.applied_at else None,
                        "problem": r.problem,
                    }
                    for r in rows
                ]
            }
        )
    else:
        emit_table(
            ["version", "name", "applied_at", "problem"],
            [[f"{r.version:04d}", r.name, r.applied_at, r.problem] for r in rows],
        )
    if any(r.applied_at is None or r.problem for r in rows):
        raise SystemExit(EXIT_ERROR)
