CREATE INDEX CONCURRENTLY customers_dup_full_name_trgm_idx ON customers
    USING gin ((lower(given_name || ' ' || family_name)) gin_trgm_ops)
    WHERE delete_time IS NULL;
