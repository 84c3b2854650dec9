-- Warehouse-native exposures: a table of the organization's own exposures in its connected
-- warehouse, read in place with a column mapping (docs/warehouse.md, "Your own exposures").
--
-- NULL: training counts the exposures Levered records (served, or sent to the ingestion API).
-- A mapping: {"table": "app_exposures", "columns": {"anonymous_id": ..., "optimization_id": ...,
-- "variant": ..., "timestamp": ..., "context": ... | null, "holdout": ... | null}}; training
-- then reads that table alone. Reconnecting the same provider keeps it; switching provider (or
-- back to managed, which deletes the row) drops it.

-- migrate:up
ALTER TABLE warehouse_connections ADD COLUMN exposures jsonb;
COMMENT ON COLUMN warehouse_connections.exposures IS
    'The table of the organization''s own exposures and its column mapping; NULL: Levered''s.';

-- migrate:down
ALTER TABLE warehouse_connections DROP COLUMN exposures;
