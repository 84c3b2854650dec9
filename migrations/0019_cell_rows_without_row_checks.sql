-- The per-user rows of the cells without per-row foreign-key checks.
--
-- observation_users, observation_user_totals and guardrail_users hold one row per user and hour
-- of exposure time (or per user): a rebuild of 10^8 exposures writes ~10^8 of them, an
-- incremental pass ~10^6. Each foreign key ran its referential check once per inserted row, as
-- an after-row trigger queued in the backend's memory: inserting 2*10^6 rows in key order took
-- 9.7 s with the key and 3.5 s without (embedded PostgreSQL 18, benchmarks/README.md,
-- "Training"), and a 10^8 rebuild queued 10^8 trigger events (the backend's private memory
-- grew to 1.1 GB).
--
-- What the keys guaranteed still holds: these rows are written only by a cells pass, in the
-- transaction that upserts the optimization's observation_state (or guardrail_state) row, which
-- keeps its own foreign keys; ON DELETE CASCADE is replaced by one delete per state row
-- (the triggers below), so deleting an optimization still removes every row.

-- migrate:up
ALTER TABLE observation_users DROP CONSTRAINT observation_users_optimization_id_fkey;
ALTER TABLE observation_user_totals DROP CONSTRAINT observation_user_totals_optimization_id_fkey;
ALTER TABLE guardrail_users DROP CONSTRAINT guardrail_users_optimization_id_metric_id_fkey;

CREATE FUNCTION observation_state_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM observation_users WHERE optimization_id = OLD.optimization_id;
    DELETE FROM observation_user_totals WHERE optimization_id = OLD.optimization_id;
    RETURN OLD;
END $$;
CREATE TRIGGER observation_state_deleted AFTER DELETE ON observation_state
    FOR EACH ROW EXECUTE FUNCTION observation_state_deleted();

CREATE FUNCTION guardrail_state_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM guardrail_users
    WHERE optimization_id = OLD.optimization_id AND metric_id = OLD.metric_id;
    RETURN OLD;
END $$;
CREATE TRIGGER guardrail_state_deleted AFTER DELETE ON guardrail_state
    FOR EACH ROW EXECUTE FUNCTION guardrail_state_deleted();

COMMENT ON TABLE observation_users IS
    'Per user and hour of exposure time: the outcome of their matured exposures there (bool: '
    '1 if any was credited; numeric: the credited sum). No foreign key (10^8 rows in a rebuild): '
    'written with the observation_state row, deleted with it (trigger observation_state_deleted).';

-- migrate:down
DROP TRIGGER guardrail_state_deleted ON guardrail_state;
DROP FUNCTION guardrail_state_deleted();
DROP TRIGGER observation_state_deleted ON observation_state;
DROP FUNCTION observation_state_deleted();
DELETE FROM observation_users AS u
WHERE NOT EXISTS (SELECT 1 FROM observation_state AS s WHERE s.optimization_id = u.optimization_id);
DELETE FROM observation_user_totals AS u
WHERE NOT EXISTS (SELECT 1 FROM observation_state AS s WHERE s.optimization_id = u.optimization_id);
DELETE FROM guardrail_users AS u
WHERE NOT EXISTS (SELECT 1 FROM guardrail_state AS s
                  WHERE s.optimization_id = u.optimization_id AND s.metric_id = u.metric_id);
ALTER TABLE observation_users ADD CONSTRAINT observation_users_optimization_id_fkey
    FOREIGN KEY (optimization_id) REFERENCES optimizations (id) ON DELETE CASCADE;
ALTER TABLE observation_user_totals ADD CONSTRAINT observation_user_totals_optimization_id_fkey
    FOREIGN KEY (optimization_id) REFERENCES optimizations (id) ON DELETE CASCADE;
ALTER TABLE guardrail_users ADD CONSTRAINT guardrail_users_optimization_id_metric_id_fkey
    FOREIGN KEY (optimization_id, metric_id)
    REFERENCES guardrail_state (optimization_id, metric_id) ON DELETE CASCADE;
COMMENT ON TABLE observation_users IS
    'Per user and hour of exposure time: the outcome of their matured exposures there (bool: '
    '1 if any was credited; numeric: the credited sum). A user''s outcome is the max (bool) or '
    'sum (numeric) over their rows; the arm totals in observation_state follow it incrementally.';
