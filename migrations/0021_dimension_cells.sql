-- Dimensions: breakdowns by properties the model does not use.
--
-- optimizations.dimensions names keys of the exposure's context that are not context factors
-- (["platform", "plan"]): the model ignores them, but results can be broken down by them
-- (?dimension=platform). The cells keep only the context factors, so each pass also writes,
-- per bucket, the same sums per (dimension, value, variant, holdout) into
-- observation_dimension_cells, replaced bucket by bucket like the cells (a change of the list
-- changes the cells' fingerprint: the next pass rebuilds). App-owned: the tenant never sees it.

-- migrate:up
ALTER TABLE optimizations ADD COLUMN dimensions jsonb NOT NULL DEFAULT '[]';
COMMENT ON COLUMN optimizations.dimensions IS
    'Context keys kept for breakdowns only (not modeled): ["platform", ...] (docs/analysis.md).';

CREATE TABLE observation_dimension_cells (
    optimization_id uuid NOT NULL REFERENCES optimizations (id) ON DELETE CASCADE,
    bucket          timestamptz NOT NULL,
    dimension       text NOT NULL,
    value           jsonb NOT NULL,
    variant_number  integer NOT NULL,
    holdout         boolean NOT NULL,
    exposures       bigint NOT NULL,
    reward_sum      double precision NOT NULL,
    reward_sumsq    double precision NOT NULL,
    PRIMARY KEY (optimization_id, bucket, dimension, variant_number, holdout, value)
);
COMMENT ON TABLE observation_dimension_cells IS
    'Matured observations per hour of exposure time x dimension value x variant x holdout '
    '(value JSON null: the key was not sent). Additive over buckets, like observation_cells.';

-- migrate:down
DROP TABLE observation_dimension_cells;
ALTER TABLE optimizations DROP COLUMN dimensions;
