-- Contains-searches of rare names in list order (create_time) without fetching every match.
--
-- A `family_name:"…"` search whose matches are rare among the newest rows asks for the first
-- page of matches by create_time. The GIN trigram indexes find every match, each fetched from
-- the heap to be sorted (1,000 random heap pages for a name shared by 0.1% of 1,000,000
-- customers). These GiST indexes hold the trigram signature and the create_time together:
-- `ORDER BY create_time <-> $origin LIMIT n` with `family_name ILIKE $pattern` is a
-- best-first index scan that stops after n matches (db::keyset::ListQuery::search, BENCHMARKS.md
-- "Search and writes, pass 3"). btree_gist provides the timestamptz part and its distance.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE INDEX customers_family_name_nearest_idx ON customers
    USING gist (family_name gist_trgm_ops, create_time);
CREATE INDEX customers_given_name_nearest_idx ON customers
    USING gist (given_name gist_trgm_ops, create_time);
