"""The customer's ClickHouse for connected-warehouse tests: a chdb data directory.

Database ``analytics`` with ``purchases`` (the rewards, commented) and a view, and a second
database ``other`` whose ``secrets`` a connection to ``analytics`` must never reach. chdb runs
one engine per process on one directory, so the test process uses one store for the whole
session (:func:`store`); a server started in another process gets its own directory, built in
a child process (:func:`build_in_subprocess`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

SECRET = "hidden-secret-value"
PURCHASES_SQL = "SELECT user_id, ts, amount FROM purchases WHERE ts >= @start_date AND NOT refunded"
SETUP = [
    "CREATE DATABASE IF NOT EXISTS analytics",
    "CREATE DATABASE IF NOT EXISTS other",
    "CREATE TABLE IF NOT EXISTS analytics.purchases (user_id String, ts DateTime64(6, 'UTC'), "
    "amount Float64, refunded Bool DEFAULT false) ENGINE = MergeTree ORDER BY (ts, user_id) "
    "COMMENT 'One row per order'",
    "CREATE VIEW IF NOT EXISTS analytics.big_orders AS "
    "SELECT * FROM analytics.purchases WHERE amount > 100",
    "CREATE TABLE IF NOT EXISTS other.secrets (x String) ENGINE = MergeTree ORDER BY x",
    f"INSERT INTO other.secrets VALUES ('{SECRET}')",
]


def build(path: Path) -> Any:
    """Create the store at ``path``; a writable chdb connection to it (the customer's own)."""
    import chdb

    path.mkdir(parents=True, exist_ok=True)
    conn = chdb.connect(f"file:{path}")
    for statement in SETUP:
        conn.query(statement)
    return conn


def build_in_subprocess(path: Path, rows: list[tuple[str, str, float]]) -> None:
    """The same store built, with ``rows`` of purchases, by a child process (then closed)."""
    values = ", ".join(f"('{u}', '{t}', {a}, false)" for u, t, a in rows) or None
    insert = [f"INSERT INTO analytics.purchases VALUES {values}"] if values else []
    code = (
        "import chdb, sys\n"
        f"conn = chdb.connect('file:{path}')\n"
        f"for s in {SETUP + insert!r}:\n    conn.query(s)\n"
        "conn.close()\n"
    )
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True)
