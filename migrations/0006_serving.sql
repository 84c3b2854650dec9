-- Serving: hot reload through LISTEN/NOTIFY, and sticky decisions that end when leaving live.
--
-- Every server process caches, per optimization, what it needs to decide (status, variant space,
-- exclusions, holdout, current model version). It LISTENs on the channel 'levered_serving'; the
-- triggers below send the optimization id there whenever something it caches changes, so no
-- writer (the optimizations service, training, a hand-run UPDATE) has to remember to notify.
-- NOTIFY is transactional: the message is delivered at COMMIT, never for a rolled-back change.
--
-- Stickiness (PRODUCT.md §4.2): a user keeps their first decision while the optimization is live
-- and stops keeping it once it leaves live. Rather than deleting every assignment of the
-- optimization inside the status change (unbounded work in someone else's transaction),
-- optimizations.live_since records when it last entered live, and an assignment older than that
-- is stale: serving ignores it and replaces it on the next real serve (levered/db/serving.py).
-- The assignment also keeps the decision it made (id, propensity, model version), so a repeated
-- serve returns the same decision and the same replay recipe.

-- migrate:up
ALTER TABLE optimizations ADD COLUMN live_since timestamptz;
COMMENT ON COLUMN optimizations.live_since IS
    'When the optimization last entered live (set by trigger); sticky assignments from before '
    'are stale. NULL: never re-entered live since creation, every assignment counts.';

ALTER TABLE assignments
    ADD COLUMN decision_id   uuid,
    ADD COLUMN propensity    double precision,
    ADD COLUMN model_version integer;
COMMENT ON COLUMN assignments.decision_id IS
    'The decision that made the assignment; with model_version it is the replay recipe.';

CREATE FUNCTION serving_mark_live_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'live' AND OLD.status IS DISTINCT FROM 'live' THEN
        NEW.live_since := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER optimizations_live_since BEFORE UPDATE OF status ON optimizations
    FOR EACH ROW EXECUTE FUNCTION serving_mark_live_since();

CREATE FUNCTION serving_notify_optimization() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('levered_serving', OLD.id::text);
    ELSE
        PERFORM pg_notify('levered_serving', NEW.id::text);
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION serving_notify_optimization() IS
    'Tells every serving process (LISTEN levered_serving) to reload one optimization.';

CREATE TRIGGER optimizations_serving_insert AFTER INSERT ON optimizations
    FOR EACH ROW EXECUTE FUNCTION serving_notify_optimization();
CREATE TRIGGER optimizations_serving_update AFTER UPDATE ON optimizations
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.design_factors IS DISTINCT FROM NEW.design_factors
          OR OLD.context_factors IS DISTINCT FROM NEW.context_factors
          OR OLD.excluded_combinations IS DISTINCT FROM NEW.excluded_combinations
          OR OLD.holdout_percentage IS DISTINCT FROM NEW.holdout_percentage
          OR OLD.sticky IS DISTINCT FROM NEW.sticky
          OR OLD.model_type IS DISTINCT FROM NEW.model_type
          OR OLD.organization_id IS DISTINCT FROM NEW.organization_id)
    EXECUTE FUNCTION serving_notify_optimization();
CREATE TRIGGER optimizations_serving_delete AFTER DELETE ON optimizations
    FOR EACH ROW EXECUTE FUNCTION serving_notify_optimization();

CREATE FUNCTION serving_notify_model() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('levered_serving', NEW.optimization_id::text);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION serving_notify_model() IS
    'A model gained a version (or was created/soft-deleted): reload its optimization.';

CREATE TRIGGER models_serving_insert AFTER INSERT ON models
    FOR EACH ROW EXECUTE FUNCTION serving_notify_model();
CREATE TRIGGER models_serving_update AFTER UPDATE ON models
    FOR EACH ROW
    WHEN (OLD.current_version IS DISTINCT FROM NEW.current_version
          OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION serving_notify_model();

-- migrate:down
DROP TRIGGER models_serving_update ON models;
DROP TRIGGER models_serving_insert ON models;
DROP FUNCTION serving_notify_model();
DROP TRIGGER optimizations_serving_delete ON optimizations;
DROP TRIGGER optimizations_serving_update ON optimizations;
DROP TRIGGER optimizations_serving_insert ON optimizations;
DROP FUNCTION serving_notify_optimization();
DROP TRIGGER optimizations_live_since ON optimizations;
DROP FUNCTION serving_mark_live_since();
ALTER TABLE assignments DROP COLUMN model_version, DROP COLUMN propensity,
    DROP COLUMN decision_id;
ALTER TABLE optimizations DROP COLUMN live_since;
