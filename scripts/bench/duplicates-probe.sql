-- One probe of scripts/bench/duplicates.sh: a random seeded customer (seed.sql ids) in the
-- normal forms src/domain/duplicates.rs computes.
\set i random(1, 1000000)
SELECT regexp_replace(lower(email), '\+[^@]*@', '@') AS pemail, split_part(regexp_replace(lower(email), '\+[^@]*@', '@'), '@', 1) AS plocal, coalesce(phone, '') AS pphone, lower(given_name || ' ' || family_name) AS pname, coalesce(company, '') AS pcompany, external_ids::text AS pext, id::text AS pid FROM customers WHERE id = ('00000000-0000-7000-8000-' || lpad(to_hex(:i::bigint), 12, '0'))::uuid \gset
