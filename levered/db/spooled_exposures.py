"""Write served exposures back from the disk spool, at most once each.

A spool file can be replayed after its rows were already stored (the process wrote them, then
died before deleting the file), so the insert skips rows already present. A served exposure is
identified by (optimization, anonymous id, timestamp, decision id): its timestamp is the serve's
clock reading in microseconds and its decision id is random, so two serves never share all four.
The probe is an index range on ``exposures_attribution_idx`` (optimization, anonymous id, time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from levered.db import Connection, serving
from levered.db.serving import EXPOSURE_COLUMNS, ExposureRow

_TYPES: Final = (
    "uuid",
    "uuid",
    "text",
    "jsonb",
    "integer",
    "jsonb",
    "timestamptz",
    "double precision",
    "uuid",
    "integer",
    "boolean",
)
_COLUMNS: Final = ", ".join(f'"{c}"' for c in EXPOSURE_COLUMNS)
INSERT_MISSING: Final = f"""
INSERT INTO warehouse.exposures ({_COLUMNS})
SELECT {_COLUMNS}
FROM unnest({", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_TYPES))}) AS s({_COLUMNS})
WHERE NOT EXISTS (
    SELECT 1 FROM warehouse.exposures e
    WHERE e.optimization_id = s.optimization_id AND e.anonymous_id = s.anonymous_id
      AND e."timestamp" = s."timestamp" AND e.decision_id IS NOT DISTINCT FROM s.decision_id
)
"""


async def store_spooled(conn: Connection, rows: Sequence[ExposureRow]) -> int:
    """Insert the rows not stored yet, in one transaction (all or nothing) that also settles
    their twins as every path storing served exposures must (:func:`serving.settle_twins`);
    how many were new."""
    if not rows:
        return 0
    async with conn.transaction():
        await serving.lock_twin_checks(conn, rows)
        status = await conn.execute(INSERT_MISSING, *(list(c) for c in zip(*rows, strict=True)))
        await serving.settle_twins(conn, rows)
    return int(status.rsplit(" ", 1)[1])
