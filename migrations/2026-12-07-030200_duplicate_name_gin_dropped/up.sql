-- The GIN full-name index that customers_dup_full_name_gist_idx (previous migration) replaces.
-- CONCURRENTLY, so reads and writes go on while it is dropped.
DROP INDEX CONCURRENTLY IF EXISTS customers_dup_full_name_trgm_idx;
