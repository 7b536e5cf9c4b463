DROP INDEX CONCURRENTLY IF EXISTS customers_dup_full_name_gist_idx;
