"""``levered db migrate|status``: the schema of the configured (or embedded) database."""

from __future__ import annotations

from cyclopts import App

from cli.console import EXIT_ERROR, notice
from cli.flags import JsonFlag
from cli.output import emit_json, emit_table

app = App(name="db", help="Inspect and migrate the database schema.")


@app.command
def migrate(*, json: JsonFlag = False) -> None:
    """Apply pending migrations (the server also does this at start)."""
    import anyio

    from levered.db import migrations
    from levered.db.database import open_database
    from levered.db.pool import connect
    from levered.settings import load_settings

    async def run(url: str) -> list[str]:
        conn = await connect(url)
        try:
            return [f"{m.version:04d}_{m.name}" for m in await migrations.migrate(conn)]
        finally:
            await conn.close()

    database = open_database(load_settings())
    try:
        applied = anyio.run(run, database.url)
    finally:
        database.close()
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
    import anyio

    from levered.db import migrations
    from levered.db.database import open_database
    from levered.db.pool import connect
    from levered.settings import load_settings

    async def run(url: str) -> list[migrations.MigrationStatus]:
        conn = await connect(url)
        try:
            return await migrations.status(conn)
        finally:
            await conn.close()

    database = open_database(load_settings())
    try:
        rows = anyio.run(run, database.url)
    finally:
        database.close()
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
