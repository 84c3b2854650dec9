-- Guardrails: metrics an optimization must not make worse, evaluated optimized vs holdout.
--
-- optimizations.guardrails is the list the API takes on create and PATCH
-- ([{"metric_id", "direction", "tolerance_percent", "auto_pause"}], validated by the service).
-- optimizations.status_reason explains a status the server set itself (an automatic pause on a
-- violated guardrail); any status change through the API clears it.
--
-- Each guardrail metric is attributed to the optimization's exposures exactly like its reward
-- metric (same last-touch statements, same one-hour buckets of exposure time, same
-- incremental passes, levered/services/guardrail_cells.py), into its own tables keyed by
-- (optimization, metric): the reward metric's observation_* tables stay as they are, and a
-- guardrail pass never takes the reward cells' lock. Cells here carry no context (guardrails
-- are judged on the whole traffic); per-user outcomes per bucket feed the optimized-vs-holdout
-- comparison (the measured lift's per-user delta method). App-owned: the tenant never sees them.

-- migrate:up
ALTER TABLE optimizations ADD COLUMN guardrails jsonb NOT NULL DEFAULT '[]';
COMMENT ON COLUMN optimizations.guardrails IS
    'Guardrail metrics: [{"metric_id", "direction": "must_not_increase"|"must_not_decrease", '
    '"tolerance_percent", "auto_pause"}] (docs/analysis.md).';
ALTER TABLE optimizations ADD COLUMN status_reason jsonb;
COMMENT ON COLUMN optimizations.status_reason IS
    'Why the server itself set the current status ({"code", "message", "at", ...}: an automatic '
    'pause on a violated guardrail); NULL after any status change through the API.';

CREATE TABLE guardrail_state (
    optimization_id uuid NOT NULL REFERENCES optimizations (id) ON DELETE CASCADE,
    metric_id       uuid NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    fingerprint     text NOT NULL,
    as_of           timestamptz NOT NULL,
    frontier        timestamptz NOT NULL,
    marker          timestamptz,
    seen_below      bigint,
    passes          bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (optimization_id, metric_id)
);
COMMENT ON TABLE guardrail_state IS
    'Watermark of one guardrail metric''s cells for an optimization (as observation_state).';

CREATE TABLE guardrail_cells (
    optimization_id uuid NOT NULL,
    metric_id       uuid NOT NULL,
    bucket          timestamptz NOT NULL,
    variant_number  integer NOT NULL,
    holdout         boolean NOT NULL,
    exposures       bigint NOT NULL,
    reward_sum      double precision NOT NULL,
    reward_sumsq    double precision NOT NULL,
    PRIMARY KEY (optimization_id, metric_id, bucket, variant_number, holdout),
    FOREIGN KEY (optimization_id, metric_id)
        REFERENCES guardrail_state (optimization_id, metric_id) ON DELETE CASCADE
);
COMMENT ON TABLE guardrail_cells IS
    'A guardrail metric attributed to an optimization''s matured exposures, per hour of exposure '
    'time x variant x holdout: exposures, sum and sum of squares of the attributed value.';

CREATE TABLE guardrail_users (
    optimization_id uuid NOT NULL,
    metric_id       uuid NOT NULL,
    bucket          timestamptz NOT NULL,
    holdout         boolean NOT NULL,
    anonymous_id    text NOT NULL,
    outcome         double precision NOT NULL,
    PRIMARY KEY (optimization_id, metric_id, bucket, holdout, anonymous_id),
    FOREIGN KEY (optimization_id, metric_id)
        REFERENCES guardrail_state (optimization_id, metric_id) ON DELETE CASCADE
);
COMMENT ON TABLE guardrail_users IS
    'Per user and hour of exposure time: the guardrail metric''s outcome of their matured '
    'exposures there (bool: 1 if any was credited; numeric: the credited sum).';

-- migrate:down
DROP TABLE guardrail_users;
DROP TABLE guardrail_cells;
DROP TABLE guardrail_state;
ALTER TABLE optimizations DROP COLUMN status_reason;
ALTER TABLE optimizations DROP COLUMN guardrails;
