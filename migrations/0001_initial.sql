-- The control plane (organizations, users, credentials, metrics, optimizations, models) and the
-- managed warehouse (exposures, rewards) plus serving state (assignments).

-- migrate:up
CREATE TABLE organizations (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    warehouse_provider text NOT NULL DEFAULT 'managed'
                       CHECK (warehouse_provider IN ('managed', 'postgres')),
    created_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE organizations IS 'Tenants. Every other row belongs to exactly one organization.';

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    name            text NOT NULL DEFAULT '',
    password_hash   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
COMMENT ON TABLE users IS 'People who log in (OAuth PKCE flow); password_hash is argon2id.';

CREATE TABLE api_keys (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    label           text NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    prefix          text NOT NULL UNIQUE,
    secret_hash     bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_keys_org_idx ON api_keys (organization_id, created_at DESC);
COMMENT ON TABLE api_keys IS
    'Organization secrets for server-to-server calls. Only a SHA-256 of the secret is stored; '
    'prefix is the visible, unique lookup part.';

CREATE TABLE oauth_codes (
    code_hash       bytea PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    client_id       text NOT NULL,
    redirect_uri    text NOT NULL,
    code_challenge  text NOT NULL,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);
COMMENT ON TABLE oauth_codes IS 'Single-use OAuth authorization codes bound to a PKCE S256 challenge.';

CREATE TABLE oauth_tokens (
    token_hash      bytea PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('access', 'refresh')),
    family_id       uuid NOT NULL,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    client_id       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX oauth_tokens_family_idx ON oauth_tokens (family_id);
COMMENT ON TABLE oauth_tokens IS
    'Access and refresh tokens (hashed). A family is one login; reusing a rotated refresh token '
    'revokes the whole family.';

CREATE TABLE metrics (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    sql              text NOT NULL,
    anonymous_id_col text NOT NULL,
    timestamp_col    text NOT NULL,
    value_col        text,
    reward_type      text NOT NULL CHECK (reward_type IN ('bool', 'numeric')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX metrics_org_idx ON metrics (organization_id, created_at DESC);
COMMENT ON TABLE metrics IS 'Named SQL over the warehouse that returns reward events.';

CREATE TABLE optimizations (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status                text NOT NULL CHECK (status IN
                          ('draft', 'live', 'paused', 'shipped', 'completed', 'archived')),
    model_type            text NOT NULL CHECK (model_type IN ('cmab', 'mab')),
    design_factors        jsonb NOT NULL,
    context_factors       jsonb NOT NULL DEFAULT '[]',
    reward_metric_id      uuid REFERENCES metrics (id) ON DELETE RESTRICT,
    attribution           jsonb NOT NULL,
    holdout_percentage    double precision NOT NULL CHECK (holdout_percentage BETWEEN 0 AND 50),
    excluded_combinations jsonb NOT NULL DEFAULT '[]',
    sticky                boolean NOT NULL DEFAULT true,
    shipped_variant       integer,
    summary               jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX optimizations_org_idx ON optimizations (organization_id, created_at DESC);
COMMENT ON TABLE optimizations IS
    'A product surface under optimization: design factors (variants are their combinations), '
    'context factors, the reward metric, attribution and lifecycle status.';

CREATE TABLE models (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    optimization_id uuid NOT NULL REFERENCES optimizations (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'untrained'
                    CHECK (status IN ('untrained', 'training', 'trained', 'failed')),
    current_version integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE UNIQUE INDEX models_one_live_per_optimization
    ON models (optimization_id) WHERE deleted_at IS NULL;
CREATE INDEX models_org_idx ON models (organization_id, created_at DESC);
COMMENT ON TABLE models IS 'The bandit model of an optimization; deleting is a soft delete.';

CREATE TABLE model_versions (
    model_id        uuid NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version >= 1),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind            text NOT NULL,
    posterior       bytea NOT NULL,
    window_start    timestamptz,
    window_end      timestamptz NOT NULL,
    counts          jsonb NOT NULL,
    seed            bigint NOT NULL,
    trained_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, version)
);
COMMENT ON TABLE model_versions IS
    'Immutable training results: posterior parameters (msgpack), window, counts and seed.';

CREATE SCHEMA warehouse;
COMMENT ON SCHEMA warehouse IS 'The managed warehouse: events posted to the ingestion API.';

CREATE TABLE warehouse.exposures (
    organization_id uuid NOT NULL,
    optimization_id uuid NOT NULL,
    anonymous_id    text NOT NULL,
    variant         jsonb NOT NULL,
    variant_number  integer NOT NULL,
    context         jsonb NOT NULL DEFAULT '{}',
    "timestamp"     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    propensity      double precision,
    decision_id     uuid,
    model_version   integer,
    holdout         boolean NOT NULL DEFAULT false,
    idempotency_key text
);
CREATE INDEX exposures_attribution_idx
    ON warehouse.exposures (optimization_id, anonymous_id, "timestamp");
CREATE UNIQUE INDEX exposures_idempotency_key
    ON warehouse.exposures (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
COMMENT ON TABLE warehouse.exposures IS 'Who saw which variant, when, in which context.';

CREATE TABLE warehouse.rewards (
    organization_id uuid NOT NULL,
    anonymous_id    text NOT NULL,
    name            text NOT NULL,
    value           double precision NOT NULL DEFAULT 1,
    "timestamp"     timestamptz NOT NULL,
    optimization_id uuid,
    properties      jsonb NOT NULL DEFAULT '{}',
    received_at     timestamptz NOT NULL DEFAULT now(),
    idempotency_key text
);
CREATE INDEX rewards_name_idx ON warehouse.rewards (organization_id, name, "timestamp");
CREATE INDEX rewards_user_idx ON warehouse.rewards (organization_id, anonymous_id, "timestamp");
CREATE UNIQUE INDEX rewards_idempotency_key
    ON warehouse.rewards (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
COMMENT ON TABLE warehouse.rewards IS
    'Conversions and values; optimization_id NULL means a global reward.';

CREATE TABLE assignments (
    optimization_id uuid NOT NULL REFERENCES optimizations (id) ON DELETE CASCADE,
    anonymous_id    text NOT NULL,
    organization_id uuid NOT NULL,
    variant_number  integer NOT NULL,
    holdout         boolean NOT NULL,
    assigned_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (optimization_id, anonymous_id)
);
COMMENT ON TABLE assignments IS 'Sticky serving: the variant a user keeps while live.';

-- migrate:down
DROP TABLE assignments;
DROP SCHEMA warehouse CASCADE;
DROP TABLE model_versions;
DROP TABLE models;
DROP TABLE optimizations;
DROP TABLE metrics;
DROP TABLE oauth_tokens;
DROP TABLE oauth_codes;
DROP TABLE api_keys;
DROP TABLE users;
DROP TABLE organizations;
