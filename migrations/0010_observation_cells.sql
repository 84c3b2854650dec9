-- Observation cells: stored, additive training input, extended incrementally.
--
-- Training used to re-attribute an optimization's whole history on every run. Now the app keeps,
-- per optimization, sufficient statistics per one-hour bucket of exposure time
-- (observation_cells: bucket x variant x context cell x holdout) and per (bucket, holdout, user)
-- outcomes for the measured lift (observation_users). A pass re-attributes only the buckets that
-- new data can change -- the bucket holding the old maturity frontier, the newly matured ones,
-- and the buckets that late events touch -- and replaces them, in the same transaction that
-- moves observation_state's watermark (levered/services/cells.py). Everything is app-owned: the
-- tenant role never sees these tables (the tenant's SQL only runs in the read-only attribution
-- snapshot that feeds them).
--
-- New indexes on the warehouse: (optimization_id, "timestamp") for the index range scans of a
-- pass (matured since the frontier, one chunk of buckets), and BRIN indexes on received_at of
-- exposures and rewards, which are appended in received order, so "what arrived since the last
-- pass" costs a read of the newest block ranges, not of the table (autosummarize: each block
-- range is summarized as it fills, so the unsummarized tail that every scan reads stays small).

-- migrate:up
ALTER TABLE optimizations ADD COLUMN training_window jsonb NOT NULL DEFAULT '{"type": "all"}';
COMMENT ON COLUMN optimizations.training_window IS
    'What training reads of the cells: {"type": "all"}, {"type": "days", "days": N} or '
    '{"type": "decay", "half_life_days": H}.';

CREATE TABLE observation_state (
    optimization_id   uuid PRIMARY KEY REFERENCES optimizations (id) ON DELETE CASCADE,
    organization_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    fingerprint       text NOT NULL,
    as_of             timestamptz NOT NULL,
    frontier          timestamptz NOT NULL,
    marker            timestamptz,
    optimized_users   bigint NOT NULL DEFAULT 0,
    optimized_sum     double precision NOT NULL DEFAULT 0,
    optimized_sumsq   double precision NOT NULL DEFAULT 0,
    holdout_users     bigint NOT NULL DEFAULT 0,
    holdout_sum       double precision NOT NULL DEFAULT 0,
    holdout_sumsq     double precision NOT NULL DEFAULT 0,
    pending           jsonb NOT NULL DEFAULT '[]',
    passes            bigint NOT NULL DEFAULT 0,
    rebuilt_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE observation_state IS
    'Watermark of an optimization''s cells: exposures with timestamp <= frontier are in them, '
    'attributed as of as_of; marker = newest received_at seen (late-data detection); the arm '
    'totals of the measured lift; fingerprint of the metric and attribution the cells were '
    'built with (a change rebuilds them); passes and the last rebuild, for operators.';

CREATE TABLE observation_cells (
    optimization_id uuid NOT NULL REFERENCES optimizations (id) ON DELETE CASCADE,
    bucket          timestamptz NOT NULL,
    variant_number  integer NOT NULL,
    holdout         boolean NOT NULL,
    context         jsonb NOT NULL,
    exposures       bigint NOT NULL,
    reward_sum      double precision NOT NULL,
    reward_sumsq    double precision NOT NULL,
    PRIMARY KEY (optimization_id, bucket, variant_number, holdout, context)
);
COMMENT ON TABLE observation_cells IS
    'Matured observations per hour of exposure time x variant x context cell x holdout: '
    'exposures, sum and sum of squares of their attributed reward. Additive over buckets.';

CREATE TABLE observation_users (
    optimization_id uuid NOT NULL REFERENCES optimizations (id) ON DELETE CASCADE,
    bucket          timestamptz NOT NULL,
    holdout         boolean NOT NULL,
    anonymous_id    text NOT NULL,
    outcome         double precision NOT NULL,
    PRIMARY KEY (optimization_id, bucket, holdout, anonymous_id)
);
CREATE INDEX observation_users_user_idx
    ON observation_users (optimization_id, holdout, anonymous_id);
COMMENT ON TABLE observation_users IS
    'Per user and hour of exposure time: the outcome of their matured exposures there (bool: '
    '1 if any was credited; numeric: the credited sum). A user''s outcome is the max (bool) or '
    'sum (numeric) over their rows; the arm totals in observation_state follow it incrementally.';

CREATE INDEX exposures_time_idx ON warehouse.exposures (optimization_id, "timestamp");
CREATE INDEX exposures_received_brin ON warehouse.exposures USING brin (received_at)
    WITH (autosummarize = on);
CREATE INDEX rewards_received_brin ON warehouse.rewards USING brin (received_at)
    WITH (autosummarize = on);

-- migrate:down
DROP INDEX warehouse.rewards_received_brin;
DROP INDEX warehouse.exposures_received_brin;
DROP INDEX warehouse.exposures_time_idx;
DROP TABLE observation_users;
DROP TABLE observation_cells;
DROP TABLE observation_state;
ALTER TABLE optimizations DROP COLUMN training_window;
