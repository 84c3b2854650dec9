-- Weighted outcomes: a third reward type.
--
-- A weighted metric declares two or more mutually exclusive outcomes
-- ([{"key", "weight", "match": {"by": "name"|"value", "value"}}], validated by the service);
-- its normalized reward rows carry the weight of the outcome they match (rows matching none are
-- the implicit "failure", weight 0, and are dropped), and an exposure's reward is the weight of
-- the highest-weight outcome among its credited rows. name_col is the column "by": "name"
-- compares. Existing metrics are unchanged (outcomes and name_col NULL).
--
-- observation_cells.outcome_counts: for a weighted reward metric, per cell, how many of its
-- exposures ended in each declared outcome (in declared order; failure is the rest), so results
-- show the outcome mix per variant from the stored cells. NULL for bool and numeric metrics.

-- migrate:up
ALTER TABLE metrics ADD COLUMN outcomes jsonb;
ALTER TABLE metrics ADD COLUMN name_col text;
ALTER TABLE metrics DROP CONSTRAINT metrics_reward_type_check;
ALTER TABLE metrics ADD CONSTRAINT metrics_reward_type_check
    CHECK (reward_type IN ('bool', 'numeric', 'weighted'));
ALTER TABLE metrics ADD CONSTRAINT metrics_weighted_outcomes_check
    CHECK ((reward_type = 'weighted') = (outcomes IS NOT NULL));
COMMENT ON COLUMN metrics.outcomes IS
    'Weighted metrics: [{"key", "weight", "match": {"by": "name"|"value", "value"}}] '
    '(docs/warehouse.md); NULL otherwise.';
COMMENT ON COLUMN metrics.name_col IS
    'Weighted metrics: the result column that outcomes matched by name compare.';

ALTER TABLE observation_cells ADD COLUMN outcome_counts bigint[];
COMMENT ON COLUMN observation_cells.outcome_counts IS
    'Weighted reward metric: exposures of the cell per declared outcome (declared order; '
    'failure = exposures - their sum). NULL for bool and numeric metrics.';

-- migrate:down
ALTER TABLE observation_cells DROP COLUMN outcome_counts;
ALTER TABLE metrics DROP CONSTRAINT metrics_weighted_outcomes_check;
DELETE FROM metrics WHERE reward_type = 'weighted';
ALTER TABLE metrics DROP CONSTRAINT metrics_reward_type_check;
ALTER TABLE metrics ADD CONSTRAINT metrics_reward_type_check
    CHECK (reward_type IN ('bool', 'numeric'));
ALTER TABLE metrics DROP COLUMN name_col;
ALTER TABLE metrics DROP COLUMN outcomes;
