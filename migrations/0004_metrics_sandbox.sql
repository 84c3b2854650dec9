-- Hardening for tenant SQL (warehouse queries and metric SQL, levered/db/sandbox.py).
--
-- Tenant roles (members of levered_tenant, migrations/0002) already see only their own rows of
-- warehouse.exposures / warehouse.rewards and nothing else. This migration removes what every
-- role gets by default through PUBLIC and that a hostile query could still use:
--   * advisory locks: session-level locks survive the sandbox's ROLLBACK, and any lock (session
--     or transaction) lives in one keyspace shared with the app's own locks (tenant-role setup,
--     training), so a tenant could block other organizations. Unlock functions stay executable
--     (asyncpg's connection reset calls pg_advisory_unlock_all()).
--   * pg_notify: the sandbox always rolls back, so a notification is never delivered; revoked
--     anyway so that a future code path that commits cannot turn it into a spoofing channel.
--   * USAGE on schema public (the control plane: users, api_keys, oauth_*): tenants have no
--     privilege on those tables either; without USAGE they cannot even resolve names there.
--   * TEMPORARY on the database: no temporary tables (the sandbox runs READ ONLY transactions,
--     which would still allow writing temporary tables).
-- The app's own role is a superuser (embedded server) and is unaffected; on an external server
-- where it is not, the grants below give it back what it might use.
--
-- Not done here, on purpose: role-level settings (statement_timeout, temp_file_limit, ...) on
-- levered_tenant would have no effect, because PostgreSQL applies ALTER ROLE ... SET only to
-- sessions that log in as that very role, never to members of a group role. The sandbox sets
-- them on each tenant login role instead (levered.db.sandbox.configure_tenant_role).

-- migrate:up
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND ((p.proname LIKE 'pg\_%advisory\_%lock%' AND p.proname NOT LIKE '%unlock%')
               OR p.proname = 'pg_notify')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        BEGIN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'could not grant % to %', f, current_user;
        END;
    END LOOP;
END $$;

REVOKE USAGE ON SCHEMA public FROM PUBLIC;

DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'not the database owner: tenants keep TEMPORARY on %', current_database();
END $$;

-- A metric's value column may be boolean or numeric; metric SQL is wrapped by the app
-- (levered.services.metrics.metric_rows_sql) without knowing which: overload resolution picks.
CREATE FUNCTION warehouse.reward_value(boolean) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN $1 THEN 1 ELSE 0 END $$;
CREATE FUNCTION warehouse.reward_value(double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce($1, 0) $$;
REVOKE ALL ON FUNCTION warehouse.reward_value(boolean), warehouse.reward_value(double precision)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION warehouse.reward_value(boolean),
    warehouse.reward_value(double precision) TO levered_tenant;
COMMENT ON FUNCTION warehouse.reward_value(boolean) IS 'A metric row''s value: true 1, else 0.';
COMMENT ON FUNCTION warehouse.reward_value(double precision) IS
    'A metric row''s value; NULL counts as 0.';

-- Column documentation, served by GET /api/v2/warehouse/tables/{table}/columns.
COMMENT ON COLUMN warehouse.exposures.optimization_id IS 'The optimization the variant belongs to.';
COMMENT ON COLUMN warehouse.exposures.anonymous_id IS
    'Stable per-user identifier; rewards attribute to exposures through it.';
COMMENT ON COLUMN warehouse.exposures.variant IS
    'The variant shown, as a JSON object factor -> level.';
COMMENT ON COLUMN warehouse.exposures.variant_number IS
    '1-based variant number in factor/level order (1 is the baseline).';
COMMENT ON COLUMN warehouse.exposures.context IS
    'Context-factor values of this exposure (JSON object).';
COMMENT ON COLUMN warehouse.exposures."timestamp" IS 'When the user saw the variant.';
COMMENT ON COLUMN warehouse.exposures.received_at IS 'When Levered stored the event.';
COMMENT ON COLUMN warehouse.exposures.propensity IS
    'Probability with which Levered served this variant (NULL when not served by Levered).';
COMMENT ON COLUMN warehouse.exposures.decision_id IS 'The serve decision that produced it, if any.';
COMMENT ON COLUMN warehouse.exposures.model_version IS 'Model version that decided, if any.';
COMMENT ON COLUMN warehouse.exposures.holdout IS 'True when the user is in the randomized holdout.';
COMMENT ON COLUMN warehouse.exposures.idempotency_key IS 'The caller''s retry key, if sent.';
COMMENT ON COLUMN warehouse.rewards.anonymous_id IS
    'Same identifier as on the exposure: this is how rewards attribute back.';
COMMENT ON COLUMN warehouse.rewards.name IS 'Event name, e.g. signup_completed.';
COMMENT ON COLUMN warehouse.rewards.value IS 'Numeric value; 1 when not sent (a conversion).';
COMMENT ON COLUMN warehouse.rewards."timestamp" IS 'When the reward happened.';
COMMENT ON COLUMN warehouse.rewards.optimization_id IS
    'Pins the reward to one optimization; NULL is a global reward.';
COMMENT ON COLUMN warehouse.rewards.properties IS 'Arbitrary JSON metadata sent with the event.';
COMMENT ON COLUMN warehouse.rewards.received_at IS 'When Levered stored the event.';
COMMENT ON COLUMN warehouse.rewards.idempotency_key IS 'The caller''s retry key, if sent.';

-- migrate:down
DROP FUNCTION warehouse.reward_value(boolean);
DROP FUNCTION warehouse.reward_value(double precision);
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    NULL;
END $$;
GRANT USAGE ON SCHEMA public TO PUBLIC;
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND ((p.proname LIKE 'pg\_%advisory\_%lock%' AND p.proname NOT LIKE '%unlock%')
               OR p.proname = 'pg_notify')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f);
    END LOOP;
END $$;
