-- The (family_name trigram, create_time) GiST index of contains-searches by create_time
-- (2026-12-07-050000). CONCURRENTLY (metadata.toml: outside a transaction), so writes go on
-- during a build that takes minutes at a million customers; an interrupted build leaves an
-- INVALID index to drop (`DROP INDEX CONCURRENTLY customers_family_name_nearest_idx`) before
-- migrating again.
CREATE INDEX CONCURRENTLY customers_family_name_nearest_idx ON customers
    USING gist (family_name gist_trgm_ops, create_time);
