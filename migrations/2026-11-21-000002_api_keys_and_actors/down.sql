ALTER TABLE customers DROP COLUMN updated_by;
ALTER TABLE customers DROP COLUMN created_by;
DROP TABLE api_keys;
