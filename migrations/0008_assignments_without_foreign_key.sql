-- Sticky assignments without a foreign key to optimizations.
--
-- Every new user of a live sticky optimization writes one assignment row (COPY for ids the
-- server generated, one batched claim statement for ids the caller sent), so the table is as
-- write-hot as warehouse.exposures, which has no foreign key either. The key's referential
-- check ran once per row: COPY batches of 500 rows cost 1.5x as much with it (6.6 against
-- 4.4 us per row, `python -m benchmarks.assignment_writes`), on the path of every new user.
--
-- What the key guaranteed still holds: rows are only written by serving, for an optimization
-- it has just loaded (so it exists), and only drafts can be deleted, which serve nothing, so
-- never have assignments; the draft delete removes the optimization's assignments anyway, in
-- its transaction, in place of ON DELETE CASCADE.

-- migrate:up
ALTER TABLE assignments DROP CONSTRAINT assignments_optimization_id_fkey;
COMMENT ON TABLE assignments IS
    'Sticky serving: the variant a user keeps while live. No foreign key (write-hot, like '
    'warehouse.exposures): written only for loaded optimizations; deleting a draft deletes its rows.';

-- migrate:down
DELETE FROM assignments AS a
WHERE NOT EXISTS (SELECT 1 FROM optimizations AS o WHERE o.id = a.optimization_id);
ALTER TABLE assignments ADD CONSTRAINT assignments_optimization_id_fkey
    FOREIGN KEY (optimization_id) REFERENCES optimizations (id) ON DELETE CASCADE;
COMMENT ON TABLE assignments IS 'Sticky serving: the variant a user keeps while live.';
