"""The measured lift day by day, from the stored per-user outcomes (``observation_users``).

One statement: each user's outcome per UTC day of exposure (bool: 1 if any of that day's
matured exposures was credited; numeric: the day's credited sum), and their running outcome
through each of their days (bool: the running max; numeric: the running sum). Per day and arm
it returns the day's users and outcome sums (the *daily* lift) and how the day changed the
cumulative totals — new users, and the change of Σ outcome and Σ outcome² of users seen before
— so the caller adds them up into the measured lift as it stood at the end of each day. The
last cumulative point equals the arm totals ``observation_state`` keeps.

Cost: a sort of the optimization's ``observation_users`` rows (one per user and hour), read
once; proportional to the history, not to what is new.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from levered.db import Connection

LIFT_DAYS: Final = """
WITH per_day AS (
    SELECT (bucket AT TIME ZONE 'UTC')::date AS day, holdout, anonymous_id,
           CASE WHEN $2 THEN max(outcome) ELSE sum(outcome) END AS o
    FROM observation_users WHERE optimization_id = $1
    GROUP BY 1, 2, 3
), running AS (
    SELECT day, holdout, o,
           CASE WHEN $2 THEN max(o) OVER upto ELSE sum(o) OVER upto END AS c,
           CASE WHEN $2 THEN max(o) OVER before ELSE sum(o) OVER before END AS p
    FROM per_day
    WINDOW upto AS (PARTITION BY holdout, anonymous_id ORDER BY day
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
           before AS (PARTITION BY holdout, anonymous_id ORDER BY day
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT day, holdout,
       count(*) AS users, sum(o) AS outcome_sum, sum(o * o) AS outcome_sumsq,
       count(*) FILTER (WHERE p IS NULL) AS new_users,
       sum(c - coalesce(p, 0)) AS delta_sum,
       sum(c * c - coalesce(p, 0) * coalesce(p, 0)) AS delta_sumsq
FROM running
GROUP BY day, holdout
ORDER BY day, holdout
"""
"""$1 optimization, $2 "the metric is bool"."""


MODELED_DAYS: Final = """
SELECT DISTINCT ON ((v.trained_at AT TIME ZONE 'UTC')::date)
       (v.trained_at AT TIME ZONE 'UTC')::date AS day, v.version, v.trained_at,
       v.counts -> 'modeled_lift' AS modeled_lift
FROM models AS m JOIN model_versions AS v ON v.model_id = m.id
WHERE m.optimization_id = $1 AND m.deleted_at IS NULL
ORDER BY (v.trained_at AT TIME ZONE 'UTC')::date, v.trained_at DESC
"""
"""The last model version trained each UTC day ($1 optimization) and the modeled lift it
recorded (``counts.modeled_lift``; absent in versions trained before it was recorded)."""


async def modeled_days(conn: Connection, optimization_id: UUID) -> list[Any]:
    return await conn.fetch(MODELED_DAYS, optimization_id)


async def lift_days(conn: Connection, optimization_id: UUID, *, bool_metric: bool) -> list[Any]:
    return await conn.fetch(LIFT_DAYS, optimization_id, bool_metric)
