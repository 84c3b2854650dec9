"""Results broken down by one context factor or dimension: stored cells summed per value (no
raw events). A context factor's values are in the cells' context; a dimension's (a context key
the model does not use, migration 0021) in ``observation_dimension_cells``."""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from levered.db import Connection

BY_VALUE: Final = """
SELECT context -> $2::text AS value, variant_number, holdout,
       sum(exposures) AS n, sum(reward_sum) AS reward_sum, sum(reward_sumsq) AS reward_sumsq
FROM observation_cells WHERE optimization_id = $1
GROUP BY 1, 2, 3
ORDER BY 1, 3, 2
"""
"""Matured exposures, Σ reward and Σ reward² per (value of context factor $2, variant, holdout)
over all history; ``value`` is NULL for exposures that did not send the factor."""


BY_DIMENSION_VALUE: Final = """
SELECT CASE WHEN value = 'null'::jsonb THEN NULL ELSE value END AS value, variant_number,
       holdout, sum(exposures) AS n, sum(reward_sum) AS reward_sum,
       sum(reward_sumsq) AS reward_sumsq
FROM observation_dimension_cells WHERE optimization_id = $1 AND dimension = $2
GROUP BY 1, 2, 3
ORDER BY 1, 3, 2
"""
""":data:`BY_VALUE` for a dimension ($2); JSON null (the key was not sent) comes back NULL."""


async def by_value(conn: Connection, optimization_id: UUID, factor: str) -> list[Any]:
    return await conn.fetch(BY_VALUE, optimization_id, factor)


async def by_dimension_value(conn: Connection, optimization_id: UUID, name: str) -> list[Any]:
    return await conn.fetch(BY_DIMENSION_VALUE, optimization_id, name)
