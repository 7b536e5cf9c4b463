-- FindDuplicateCustomers (issue 19): similar full names from a GiST trigram index instead of
-- the GIN one. The probe asks for the nearest names (`ORDER BY full_name <-> probe LIMIT n`,
-- pruned by `%` at the candidate similarity 0.5): GiST returns them nearest first and stops
-- after n, where GIN must collect every row sharing enough trigrams (thousands for a common
-- name) before they can be ranked. `siglen=256` (default 12 bytes): wider signatures prune
-- far more of the tree for a name without near neighbours (measured at 1,000,000 customers:
-- 200-270 ms with the default, 40-100 ms with 128 or 256 bytes; BENCHMARKS.md).
--
-- Built CONCURRENTLY (metadata.toml: outside a transaction, so one statement per migration):
-- at a million customers the build takes minutes, and a plain CREATE INDEX would hold off
-- every write for as long while replicas keep serving. The GIN index it replaces is dropped
-- by the next migration, once this one is valid. If a build is interrupted, PostgreSQL
-- leaves an INVALID index behind: `DROP INDEX CONCURRENTLY customers_dup_full_name_gist_idx`
-- and migrate again (docs/operations.md, "Migrations").
CREATE INDEX CONCURRENTLY customers_dup_full_name_gist_idx ON customers
    USING gist ((lower(given_name || ' ' || family_name)) gist_trgm_ops (siglen = 256))
    WHERE delete_time IS NULL;
