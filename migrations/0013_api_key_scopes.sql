-- migrate:up
-- Scoped API keys: what a key may do. Existing keys keep full rights ('admin'), so upgrading
-- breaks no caller; a key without a scope an endpoint needs gets 403 naming that scope.
ALTER TABLE api_keys
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{admin}'
    CHECK (cardinality(scopes) >= 1 AND scopes <@ '{ingest,serve,read,admin}'::text[]);
COMMENT ON COLUMN api_keys.scopes IS
    'Scopes of the key: ingest, serve, read, admin (admin implies every other).';

-- migrate:down
ALTER TABLE api_keys DROP COLUMN scopes;
