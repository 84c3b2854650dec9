-- Twins of served exposures: whether an optimization has served exposures, and ingested ones.
--
-- A serve stores its exposure itself; an SDK that also sends that exposure to the ingestion API
-- would store it twice, and last-touch attribution would count the user twice (one 0, one 1).
-- An ingested exposure with the same organization, optimization, anonymous id and variant
-- number as a served one, timed within 60 s of it, is that served exposure's twin and is stored
-- once: as the served row (levered/db/warehouse.py says why and how). Both sides find twins by
-- index range probes of exposures_attribution_idx (optimization, anonymous id, time), which
-- exists already. What this migration adds is the cheap test that keeps both write paths free
-- of probes where no twin can exist: an ingestion batch only probes optimizations with
-- first_served_at set, a serve flush only those with first_ingested_at set. Both are read with
-- the optimization rows those paths read anyway. (Two small tables were tried first: their
-- lookups made PostgreSQL re-plan the ingestion batch's context query on every execution,
-- ~90 us per batch; columns of the row cost nothing.)
--
-- Each is set once, from NULL, and never cleared: first_served_at by the serve buffer's flush
-- in the transaction of its COPY, first_ingested_at by the first ingestion batch of the
-- optimization in a statement committed before that batch's rows (so a snapshot that sees an
-- ingested row sees the mark). Neither column is one serving caches, so setting them sends no
-- reload notification (0006's trigger lists its columns).
--
-- The backfill reads each optimization's exposures until it finds one of the kind (no index on
-- decision_id): at worst about one pass over warehouse.exposures per column, once.

-- migrate:up
ALTER TABLE optimizations
    ADD COLUMN first_served_at   timestamptz,
    ADD COLUMN first_ingested_at timestamptz;
COMMENT ON COLUMN optimizations.first_served_at IS
    'When the optimization''s first served exposure was written (NULL: none yet). Only '
    'ingested exposures of optimizations with one are checked for a served twin.';
COMMENT ON COLUMN optimizations.first_ingested_at IS
    'When its first exposure came through the ingestion API (NULL: none yet). Only serve '
    'flushes of optimizations with one look for ingested twins to delete.';

UPDATE optimizations o SET first_served_at = now()
WHERE EXISTS (SELECT 1 FROM warehouse.exposures e
              WHERE e.optimization_id = o.id AND e.decision_id IS NOT NULL);
UPDATE optimizations o SET first_ingested_at = now()
WHERE EXISTS (SELECT 1 FROM warehouse.exposures e
              WHERE e.optimization_id = o.id AND e.decision_id IS NULL);

-- migrate:down
ALTER TABLE optimizations DROP COLUMN first_ingested_at, DROP COLUMN first_served_at;
