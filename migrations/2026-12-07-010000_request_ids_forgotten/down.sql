ALTER TABLE request_ids DROP COLUMN IF EXISTS forgotten_reason;
