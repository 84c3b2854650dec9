-- Tenant SQL cannot read other tenants' metadata from the system catalogs.
--
-- Every role gets, through PUBLIC, catalog views and functions that describe the whole cluster.
-- For tenant roles (levered_tenant members, migrations 0002/0004) those reveal what row-level
-- security hides: other organizations' sessions (pg_stat_activity: role names, states),
-- every tenant role (pg_roles: the number of organizations), and how many rows the shared
-- warehouse tables hold (pg_stat_all_tables.n_live_tup, pg_class.reltuples/relpages, relation
-- sizes: other tenants' event volume). This migration revokes them from PUBLIC:
--   * every pg_catalog view and function named pg_stat* / pg_statio* (sessions, per-table and
--     per-database counters, progress, replication, WAL, I/O, and pg_stats: column statistics
--     of the shared tables), and pg_stat_statements if that extension is installed now;
--   * pg_locks and pg_lock_status(), pg_blocking_pids(), pg_safe_snapshot_blocking_pids(),
--     pg_prepared_xacts (other sessions' locks and transactions);
--   * pg_roles, pg_user, pg_group, pg_auth_members, pg_db_role_setting, pg_shdepend,
--     pg_shdescription (roles and what refers to them; pg_authid is superuser-only already);
--   * relation and database sizes (pg_relation_size & co.) and WAL positions
--     (pg_current_wal_lsn & co.: the cluster's write volume);
--   * pg_class's reltuples, relpages, relallvisible (and relallfrozen where it exists): SELECT on
--     pg_class is revoked and re-granted column by column for every other column, so name and
--     type lookups (asyncpg's type introspection, format_type, to_regclass, the columns
--     endpoint) keep working; only `SELECT *` and those columns are refused.
-- The app's own role keeps all of it: a superuser ignores grants, and each revoked object is
-- granted back to the role running the migration (an external server where it is no superuser).
-- Where the migrating role may not change a catalog's privileges the statement is skipped with
-- a WARNING (the catalogs then stay readable: docs/warehouse.md says how to check).
--
-- Not hidden, because PostgreSQL cannot hide them from an ordinary role: role names through the
-- regrole type's output (`SELECT g::oid::regrole FROM generate_series(16384, 20000) g`, which no
-- privilege governs) and the transaction ids (xmin) of a tenant's own rows. Tenant role names
-- are random (levered_org_<16 hex>) and carry no organization id; what those two reveal is how
-- many tenant roles exist and how many transactions the cluster ran, not any tenant's rows.

-- migrate:up
DO $$
DECLARE
    obj text;
    kept text;
BEGIN
    FOR obj IN
        SELECT format('TABLE %s', c.oid::regclass) FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind IN ('v', 'r')
          AND (c.relname LIKE 'pg\_stat%'
               OR c.relname IN ('pg_locks', 'pg_prepared_xacts', 'pg_roles', 'pg_user',
                                'pg_group', 'pg_auth_members', 'pg_db_role_setting',
                                'pg_shdepend', 'pg_shdescription'))
          AND c.relname NOT LIKE 'pg\_statistic%'  -- superuser-only already
        UNION ALL
        SELECT format('TABLE %s', c.oid::regclass) FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                   AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_stat_statements'
        UNION ALL
        SELECT format('FUNCTION %s', p.oid::regprocedure) FROM pg_catalog.pg_proc p
        WHERE (p.pronamespace = 'pg_catalog'::regnamespace
               AND (p.proname LIKE 'pg\_stat\_%'
                    OR p.proname IN ('pg_lock_status', 'pg_blocking_pids',
                                     'pg_safe_snapshot_blocking_pids', 'pg_prepared_xact',
                                     'pg_relation_size', 'pg_total_relation_size',
                                     'pg_table_size', 'pg_indexes_size', 'pg_database_size',
                                     'pg_tablespace_size', 'pg_current_wal_lsn',
                                     'pg_current_wal_insert_lsn', 'pg_current_wal_flush_lsn'))
               -- not PUBLIC's to begin with (superuser-only): left as they are
               AND p.proname NOT LIKE 'pg\_stat\_reset%'
               AND p.proname NOT IN ('pg_stat_file', 'pg_stat_have_stats'))
           OR p.oid IN (SELECT d.objid FROM pg_catalog.pg_depend d
                        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                        WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
                          AND e.extname = 'pg_stat_statements')
    LOOP
        BEGIN
            EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', obj);
            IF obj LIKE 'TABLE %' THEN
                EXECUTE format('GRANT SELECT ON %s TO %I', obj, current_user);
            ELSE
                EXECUTE format('GRANT EXECUTE ON %s TO %I', obj, current_user);
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'levered: could not hide % from tenant roles (not its owner)', obj;
        END;
    END LOOP;

    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO kept
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = 'pg_catalog.pg_class'::regclass AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT IN ('reltuples', 'relpages', 'relallvisible', 'relallfrozen');
    BEGIN
        REVOKE SELECT ON pg_catalog.pg_class FROM PUBLIC;
        EXECUTE format('GRANT SELECT (%s) ON pg_catalog.pg_class TO PUBLIC', kept);
        EXECUTE format('GRANT SELECT ON pg_catalog.pg_class TO %I', current_user);
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'levered: could not hide pg_class row counts from tenant roles';
    END;
END $$;

-- migrate:down
DO $$
DECLARE
    obj text;
    kept text;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO kept
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = 'pg_catalog.pg_class'::regclass AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT IN ('reltuples', 'relpages', 'relallvisible', 'relallfrozen');
    BEGIN
        EXECUTE format('REVOKE SELECT (%s) ON pg_catalog.pg_class FROM PUBLIC', kept);
        GRANT SELECT ON pg_catalog.pg_class TO PUBLIC;
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    FOR obj IN
        SELECT format('TABLE %s', c.oid::regclass) FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind IN ('v', 'r')
          AND (c.relname LIKE 'pg\_stat%'
               OR c.relname IN ('pg_locks', 'pg_prepared_xacts', 'pg_roles', 'pg_user',
                                'pg_group', 'pg_auth_members', 'pg_db_role_setting',
                                'pg_shdepend', 'pg_shdescription'))
          AND c.relname NOT LIKE 'pg\_statistic%'
        UNION ALL
        SELECT format('FUNCTION %s', p.oid::regprocedure) FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND (p.proname LIKE 'pg\_stat\_%'
               OR p.proname IN ('pg_lock_status', 'pg_blocking_pids',
                                'pg_safe_snapshot_blocking_pids', 'pg_prepared_xact',
                                'pg_relation_size', 'pg_total_relation_size', 'pg_table_size',
                                'pg_indexes_size', 'pg_database_size', 'pg_tablespace_size',
                                'pg_current_wal_lsn', 'pg_current_wal_insert_lsn',
                                'pg_current_wal_flush_lsn'))
          AND p.proname NOT LIKE 'pg\_stat\_reset%'
          AND p.proname NOT IN ('pg_stat_file', 'pg_stat_have_stats')
    LOOP
        BEGIN
            IF obj LIKE 'TABLE %' THEN
                EXECUTE format('GRANT SELECT ON %s TO PUBLIC', obj);
            ELSE
                EXECUTE format('GRANT EXECUTE ON %s TO PUBLIC', obj);
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END;
    END LOOP;
END $$;
