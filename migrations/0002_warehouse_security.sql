-- Tenant isolation of the managed warehouse, enforced by PostgreSQL itself.
--
-- Design (see also levered/db/warehouse.py):
--   * Every organization that reads its warehouse gets its own LOGIN role with a random,
--     meaningless name (levered_org_<16 random hex>): pg_roles is world-readable, so a name
--     derived from the organization id would list every tenant's id to every tenant.
--   * warehouse.tenant_roles maps role name -> organization. Only the app's (superuser) role can
--     read it: it also holds each role's generated password, which the app needs to log in as
--     the tenant. Tenants cannot read, write or even see the contents of this table.
--   * Row-level security on warehouse.exposures / warehouse.rewards lets a tenant see only rows
--     whose organization_id is the one mapped to its *session* user, looked up by the SECURITY
--     DEFINER function warehouse.tenant_organization(). session_user is fixed at login and only a
--     superuser can change it (SET SESSION AUTHORIZATION), so neither SET ROLE, RESET ROLE,
--     set_config() nor any other statement of hand-written tenant SQL can change which
--     organization the rows are filtered for. No GUC (current_setting) is involved.
--   * Consequence, on purpose: reading "as an organization" means *connecting as its role*
--     (levered.db.warehouse.tenant_connection). A superuser connection that SET ROLEs to a tenant
--     role sees nothing (session_user is not mapped): that path, which user SQL could escape
--     with RESET ROLE, fails closed instead of open.
--   * levered_tenant is a NOLOGIN group role holding the only privileges tenants have: USAGE on
--     schema warehouse and SELECT on the two event tables. Tenant roles are members of it. They
--     have no privilege on the control-plane tables in public (api_keys, users, ...).
--   * The app itself connects as the superuser, which bypasses RLS: ingestion writes and the
--     server's own queries are unaffected.

-- migrate:up
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'levered_tenant') THEN
        CREATE ROLE levered_tenant NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
            NOREPLICATION NOBYPASSRLS;
    END IF;
END $$;
COMMENT ON ROLE levered_tenant IS
    'Levered: group role of every organization''s warehouse login role (read-only, RLS-filtered).';

CREATE TABLE warehouse.tenant_roles (
    organization_id uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    role_name       text NOT NULL UNIQUE CHECK (role_name ~ '^levered_org_[0-9a-f]{16}$'),
    password        text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON warehouse.tenant_roles FROM PUBLIC;
COMMENT ON TABLE warehouse.tenant_roles IS
    'The login role through which an organization reads its warehouse rows (RLS keys on it). '
    'Readable only by the app: it holds the generated role passwords.';

CREATE FUNCTION warehouse.tenant_organization() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT organization_id FROM warehouse.tenant_roles WHERE role_name = session_user
$$;
REVOKE ALL ON FUNCTION warehouse.tenant_organization() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION warehouse.tenant_organization() TO levered_tenant;
COMMENT ON FUNCTION warehouse.tenant_organization() IS
    'The organization of the logged-in tenant role (session_user), NULL for any other role.';

GRANT USAGE ON SCHEMA warehouse TO levered_tenant;
GRANT SELECT ON warehouse.exposures, warehouse.rewards TO levered_tenant;

ALTER TABLE warehouse.exposures ENABLE ROW LEVEL SECURITY;
ALTER TABLE warehouse.rewards ENABLE ROW LEVEL SECURITY;

-- (SELECT ...) makes the lookup an InitPlan: evaluated once per query, not once per row, and
-- the comparison can use the organization_id indexes.
CREATE POLICY tenant_read ON warehouse.exposures FOR SELECT TO levered_tenant
    USING (organization_id = (SELECT warehouse.tenant_organization()));
CREATE POLICY tenant_read ON warehouse.rewards FOR SELECT TO levered_tenant
    USING (organization_id = (SELECT warehouse.tenant_organization()));

-- migrate:down
DO $$
DECLARE
    tenant record;
BEGIN
    FOR tenant IN SELECT role_name FROM warehouse.tenant_roles LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = tenant.role_name) THEN
            EXECUTE format('DROP OWNED BY %I', tenant.role_name);
            BEGIN
                EXECUTE format('DROP ROLE %I', tenant.role_name);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                NULL;  -- still granted something in another database of this cluster
            END;
        END IF;
    END LOOP;
END $$;
DROP POLICY tenant_read ON warehouse.rewards;
DROP POLICY tenant_read ON warehouse.exposures;
ALTER TABLE warehouse.rewards DISABLE ROW LEVEL SECURITY;
ALTER TABLE warehouse.exposures DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON warehouse.exposures, warehouse.rewards FROM levered_tenant;
REVOKE USAGE ON SCHEMA warehouse FROM levered_tenant;
DROP FUNCTION warehouse.tenant_organization();
DROP TABLE warehouse.tenant_roles;
DO $$
BEGIN
    DROP ROLE IF EXISTS levered_tenant;
EXCEPTION WHEN dependent_objects_still_exist THEN
    NULL;  -- other databases of this cluster still use it
END $$;
