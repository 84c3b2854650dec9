-- migrate:up
-- Connected warehouses: an organization's own PostgreSQL (and, later, ClickHouse) that Levered
-- reads rewards and catalogs from. One connection per organization; the password is stored
-- encrypted (Fernet, a key outside the database: LEVERED_SECRET_KEY or secret.key in the data
-- directory), so a copy of the database alone does not reveal it.
ALTER TABLE organizations DROP CONSTRAINT IF EXISTS organizations_warehouse_provider_check;
ALTER TABLE organizations ADD CONSTRAINT organizations_warehouse_provider_check
    CHECK (warehouse_provider IN ('managed', 'postgres', 'clickhouse'));

CREATE TABLE warehouse_connections (
    organization_id uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    provider        text NOT NULL CHECK (provider IN ('postgres', 'clickhouse')),
    dataset_id      text NOT NULL CHECK (length(dataset_id) BETWEEN 1 AND 63),
    settings        jsonb NOT NULL,
    secret          bytea,
    warnings        text[] NOT NULL DEFAULT '{}',
    tested_at       timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE warehouse_connections IS
    'The connected warehouse of an organization: non-secret settings in clear, the password '
    'encrypted; never granted to tenant roles.';

-- migrate:down
DROP TABLE warehouse_connections;
ALTER TABLE organizations DROP CONSTRAINT organizations_warehouse_provider_check;
ALTER TABLE organizations ADD CONSTRAINT organizations_warehouse_provider_check
    CHECK (warehouse_provider IN ('managed', 'postgres'));
