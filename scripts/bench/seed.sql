-- Seeds `customers` for `make bench` (psql -v rows=N). Deterministic, so every run and the
-- load generator agree on what exists:
--   * customer i (1..rows) has id 00000000-0000-7000-8000-<i as 12 hex digits>;
--   * create_time rises with i (one second apart, ending an hour ago), so the default
--     order (create_time, id) walks i upwards;
--   * family names come from 40 prefixes x 25 suffixes = 1,000 names, spread evenly and
--     scrambled across i (name n = i * 2654435761 mod 1000; prefix n % 40, suffix n / 40),
--     so every family name is shared by rows/1000 customers, like real surnames;
--   * emails are unique, phones E.164, addresses and labels realistic in size, and every
--     row passes the service's own validation (an update re-validates the whole customer).
-- The generator's search terms (bench/src/scenarios.rs, SEARCH_TERMS) are names from these
-- lists: keep them in step.
--
-- Secondary indexes are dropped before the bulk insert and rebuilt after it (one sorted
-- build per index is far faster than a million incremental GIN/B-tree inserts), whatever
-- indexes the migrations define; then ANALYZE so the planner sees the real distribution.
\set ON_ERROR_STOP on
SET maintenance_work_mem = '256MB';
SET synchronous_commit = off;

CREATE TEMP TABLE bench_indexes AS
    SELECT indexname, indexdef FROM pg_indexes
    WHERE schemaname = 'public' AND tablename = 'customers'
      AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'customers'::regclass);

DO $$
DECLARE ix record;
BEGIN
    FOR ix IN SELECT indexname FROM bench_indexes LOOP
        EXECUTE format('DROP INDEX %I', ix.indexname);
    END LOOP;
END $$;

INSERT INTO customers (id, given_name, family_name, email, phone, address, status, company,
                       business_id, labels, version, create_time, update_time, created_by,
                       updated_by)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
       given,
       family,
       lower(given) || '.' || lower(family) || '.' || i || '@example.com',
       '+1415' || lpad(((i::bigint * 7919) % 10000000)::text, 7, '0'),
       jsonb_build_object(
           'lines', jsonb_build_array((i % 9000 + 1) || ' ' || street || ' Street'),
           'locality', city,
           'region', 'CA',
           'postal_code', lpad((90000 + i % 9999)::text, 5, '0'),
           'country_code', 'US'),
       CASE WHEN i % 10 = 0 THEN 2 WHEN i % 25 = 0 THEN 3 ELSE 1 END,
       CASE WHEN i % 4 = 0
            THEN 'companies/00000000-0000-7000-9000-' || lpad(to_hex(i % 5000), 12, '0') END,
       CASE WHEN i % 4 = 0 THEN 'BID-' || i END,
       jsonb_build_object('tier', (ARRAY['gold', 'silver', 'bronze'])[1 + i % 3],
                          'source', (ARRAY['web', 'store', 'partner', 'import'])[1 + i % 4]),
       1,
       ts, ts, 'seed', 'seed'
FROM (
    SELECT i,
           (ARRAY['Ada', 'Ben', 'Chloe', 'Dmitri', 'Elena', 'Farid', 'Grace', 'Hiro', 'Ines',
                  'Jamal', 'Kira', 'Liam', 'Maya', 'Noah', 'Olga', 'Pedro', 'Quinn', 'Rosa',
                  'Sven', 'Tara', 'Umar', 'Vera', 'Wei', 'Ximena', 'Yusuf', 'Zoe', 'Amir',
                  'Bianca', 'Carlos', 'Dana', 'Emil', 'Fatima', 'Gustav', 'Hana', 'Ivan',
                  'Julia', 'Kofi', 'Lena', 'Marco', 'Nina', 'Oscar', 'Priya', 'Rafael',
                  'Sofia', 'Tomas', 'Uma', 'Viktor', 'Wanda', 'Yara', 'Zane'])[1 + i % 50]
               AS given,
           (ARRAY['Ander', 'Bar', 'Cal', 'Dal', 'Eck', 'Fair', 'Gal', 'Har', 'Ing', 'Jen',
                  'Kel', 'Lan', 'Mac', 'Nor', 'Olm', 'Pen', 'Quin', 'Ros', 'Sal', 'Thorn',
                  'Ul', 'Van', 'Wal', 'Xan', 'Yar', 'Zell', 'Bright', 'Crow', 'Dun', 'El',
                  'Fitz', 'Gold', 'Hol', 'Ives', 'Kings', 'Lind', 'Mor', 'Nash', 'Oak',
                  'Pratt'])[1 + (i * 2654435761) % 1000 % 40]
           || (ARRAY['son', 'ton', 'ley', 'field', 'berg', 'man', 'wood', 'well', 'ford',
                     'ridge', 'stein', 'ers', 'by', 'more', 'ham', 'worth', 'land', 'hurst',
                     'mann', 'sen', 'ard', 'ing', 'ett', 'low', 'ey'])[1 + (i * 2654435761) % 1000 / 40]
               AS family,
           (ARRAY['Oak', 'Pine', 'Maple', 'Cedar', 'Elm', 'Birch', 'Willow'])[1 + i % 7] AS street,
           (ARRAY['San Francisco', 'Oakland', 'San Jose', 'Berkeley', 'Fresno',
                  'Sacramento'])[1 + i % 6] AS city,
           now() - interval '1 hour' - (:rows - i) * interval '1 second' AS ts
    FROM generate_series(1, :rows) AS i
) AS seed;

DO $$
DECLARE ix record;
BEGIN
    FOR ix IN SELECT indexdef FROM bench_indexes LOOP
        EXECUTE ix.indexdef;
    END LOOP;
END $$;

VACUUM ANALYZE customers;
