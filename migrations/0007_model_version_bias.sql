-- Exploration bias of a model version (POST /api/v2/models/{id}/train {"bias": {...}}).
--
-- A version's posterior is stored already widened by its bias, so serving and replays need
-- nothing else; the column records what the widening was ({factor name: b}, NULL: none) for
-- the API, and is what the next training inherits when it is given no bias of its own
-- (docs/training.md, "Bias"). Versions stay immutable: the column is written once, on INSERT.

-- migrate:up
ALTER TABLE model_versions ADD COLUMN bias jsonb;
COMMENT ON COLUMN model_versions.bias IS
    'Per design factor exploration bias b >= 0 the posterior was widened by (sd x (1 + b)); '
    'NULL: the plain posterior.';

-- migrate:down
ALTER TABLE model_versions DROP COLUMN bias;
