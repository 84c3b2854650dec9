-- Organizations with members and roles, server administrators, and one-time invites.
--
-- A user may now belong to several organizations: memberships (user × organization × role) is
-- the source of truth for who may act in an organization and how. users.organization_id stays
-- and means "the organization the account was created in"; nothing authorizes by it any more.
-- Every existing user becomes admin of their organization (until now every user was), and the
-- first user ever created becomes the server administrator (the one who creates organizations).

-- migrate:up
ALTER TABLE users ADD COLUMN is_server_admin boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN users.is_server_admin IS
    'May create organizations. The first user (the one the first start creates) is one.';
UPDATE users SET is_server_admin = true
WHERE id = (SELECT id FROM users ORDER BY created_at, id LIMIT 1);

CREATE TABLE memberships (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id, created_at);
COMMENT ON TABLE memberships IS
    'Who belongs to which organization, with which role: admin (everything), member '
    '(optimizations, metrics, models), viewer (read-only). An organization keeps >= 1 admin.';
INSERT INTO memberships (organization_id, user_id, role, created_at, updated_at)
SELECT organization_id, id, 'admin', created_at, created_at FROM users;

CREATE TABLE invites (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL UNIQUE,
    email           text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    role            text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    invited_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    accepted_at     timestamptz,
    accepted_by     uuid REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX invites_org_idx ON invites (organization_id, created_at DESC);
COMMENT ON TABLE invites IS
    'One-time invitations to an organization. Only a SHA-256 of the token is stored; accepting '
    'sets accepted_at, so a token works once.';

-- migrate:down
DROP TABLE invites;
DROP TABLE memberships;
ALTER TABLE users DROP COLUMN is_server_admin;
