-- Per-user totals of the measured lift, kept incrementally: a pass touches its users, not their
-- history; and the snapshot of the last pass, so late events are told apart exactly.
--
-- The arm totals of the measured lift (users, outcome sum and sum of squares per arm, in
-- observation_state) depend on each user's outcome over all their buckets. A pass used to
-- recompute the changed users' outcomes before and after from all their observation_users rows,
-- through a second index on (optimization_id, holdout, anonymous_id) as large as the history:
-- two joins over the changed users' whole history and a random insert into that index per new
-- row (the largest statements of an incremental pass and of a rebuild, benchmarks/README.md).
-- Now each user's outcome is summarized in one row here — how many bucket rows they have, how
-- many of them are credited (a bool metric's outcome is "any credited") and the sum of their
-- outcomes (a numeric metric's) — and a pass adds the change of its replaced buckets to it: one
-- upsert per changed user. observation_users keeps only its primary key, which is bucket-first,
-- so a pass's delete and insert are range operations at the buckets it replaces.
--
-- observation_state.seen_below: "received after the last pass" was judged by received_at with a
-- 5-minute margin (received_at is a transaction's start, and a batch may commit after a pass's
-- snapshot with an older received_at than the newest the pass saw), so every event of the
-- margin was re-attributed by up to five passes in a row. Now a pass keeps its snapshot's xmin;
-- an event of the margin whose inserting transaction is below it was seen and is skipped.

-- migrate:up
CREATE TABLE observation_user_totals (
    optimization_id uuid NOT NULL REFERENCES optimizations (id) ON DELETE CASCADE,
    holdout         boolean NOT NULL,
    anonymous_id    text NOT NULL,
    buckets         bigint NOT NULL,
    credited        bigint NOT NULL,
    outcome_sum     double precision NOT NULL,
    PRIMARY KEY (optimization_id, holdout, anonymous_id)
) WITH (fillfactor = 80);
COMMENT ON TABLE observation_user_totals IS
    'Per user of an optimization''s cells: their observation_users rows (buckets), how many '
    'have a positive outcome (credited) and the sum of the outcomes. The user''s outcome is '
    'credited > 0 (bool metric) or outcome_sum (numeric); a user with no rows has no row here. '
    'fillfactor 80 leaves room for the in-place (HOT) updates of a pass.';

INSERT INTO observation_user_totals
SELECT optimization_id, holdout, anonymous_id, count(*), count(*) FILTER (WHERE outcome > 0),
       sum(outcome)
FROM observation_users
GROUP BY optimization_id, holdout, anonymous_id;

DROP INDEX observation_users_user_idx;

ALTER TABLE observation_state ADD COLUMN seen_below bigint;
COMMENT ON COLUMN observation_state.seen_below IS
    'xmin (64-bit) of the last pass''s snapshot: an event whose inserting transaction id is '
    'below it was committed before that pass read, so the pass saw it; NULL: not known (a '
    'state from before this column), every event near the marker counts as unseen.';

-- migrate:down
ALTER TABLE observation_state DROP COLUMN seen_below;
CREATE INDEX observation_users_user_idx
    ON observation_users (optimization_id, holdout, anonymous_id);
DROP TABLE observation_user_totals;
