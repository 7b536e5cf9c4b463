DROP INDEX IF EXISTS request_ids_customer_id_idx;
ALTER TABLE request_ids DROP COLUMN IF EXISTS customer_id;
