-- FindDuplicateCustomers (issue 19): the normal forms a probe compares, indexed over live
-- customers (the only candidates). The expressions are exactly those of src/db/duplicates.rs
-- (and of domain::duplicates::normal_email): lowercase, without a `+tag` in the local part.
-- Phone equality uses customers_phone_idx; external ids the primary key of
-- customer_external_ids.
CREATE INDEX customers_dup_email_idx ON customers
    ((regexp_replace(lower(email), '\+[^@]*@', '@')))
    WHERE delete_time IS NULL;
CREATE INDEX customers_dup_email_local_idx ON customers
    ((split_part(regexp_replace(lower(email), '\+[^@]*@', '@'), '@', 1)))
    WHERE delete_time IS NULL;
-- Trigram similarity of full names (`%`): given_name and family_name have trigram indexes
-- of their own, but a probe compares the whole name.
CREATE INDEX customers_dup_full_name_trgm_idx ON customers
    USING gin ((lower(given_name || ' ' || family_name)) gin_trgm_ops)
    WHERE delete_time IS NULL;
