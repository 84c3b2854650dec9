-- Attribution: rewards pinned to another optimization are invisible while attributing.
--
-- A reward may carry an optimization_id ("pinned": it counts only for that optimization) or
-- none ("global": it counts for every optimization whose metric selects it). A metric's SQL is
-- written by the user and need not output optimization_id, so the pinning cannot be applied to
-- its result: it is applied underneath it, by the row-level security policy on
-- warehouse.rewards. During attribution (levered/db/attribution.py) the app sets, with
-- set_config(..., true) (= SET LOCAL, i.e. for that transaction only),
--
--     levered.attribution_optimization = '<the optimization id>'
--
-- and the policy then hides every reward pinned to a *different* optimization. When the
-- setting is absent or empty (warehouse queries, metric previews) the rows are filtered exactly
-- as in 0002.
--
-- This is a semantic filter *within* one organization, not a tenancy boundary: the tenant's own
-- SQL runs on the same connection and could change the setting (set_config is open to every
-- role), which could only make its own attribution count its own other-optimization rewards.
-- Tenancy stays keyed on session_user through warehouse.tenant_organization(), which no
-- statement of tenant SQL can change (see 0002). The (SELECT ...) wrappers make both lookups
-- InitPlans: evaluated once per query, not once per row.

-- migrate:up
DROP POLICY tenant_read ON warehouse.rewards;
CREATE POLICY tenant_read ON warehouse.rewards FOR SELECT TO levered_tenant
    USING (
        organization_id = (SELECT warehouse.tenant_organization())
        AND (
            optimization_id IS NULL
            OR (SELECT nullif(current_setting('levered.attribution_optimization', true), ''))
               IS NULL
            OR optimization_id =
               (SELECT nullif(current_setting('levered.attribution_optimization', true), '')::uuid)
        )
    );
COMMENT ON POLICY tenant_read ON warehouse.rewards IS
    'Tenants see their own rewards (session_user -> organization); while the transaction-local '
    'setting levered.attribution_optimization is set, rewards pinned to another optimization '
    'are hidden too (attribution; not a tenancy boundary).';

-- migrate:down
DROP POLICY tenant_read ON warehouse.rewards;
CREATE POLICY tenant_read ON warehouse.rewards FOR SELECT TO levered_tenant
    USING (organization_id = (SELECT warehouse.tenant_organization()));
