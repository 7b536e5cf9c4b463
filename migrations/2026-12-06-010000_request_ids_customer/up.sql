-- The customer whose personal data a stored response holds (a customer, or one of its
-- notes): purging the customer erases these responses (issue 16). Nullable, so an older
-- release that does not write it keeps working during a rolling upgrade.
ALTER TABLE request_ids ADD COLUMN customer_id uuid;
CREATE INDEX request_ids_customer_id_idx ON request_ids (customer_id)
    WHERE customer_id IS NOT NULL;
