DROP INDEX CONCURRENTLY IF EXISTS customers_given_name_nearest_idx;
