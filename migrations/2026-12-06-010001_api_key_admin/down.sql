DROP TABLE api_key_audit;
DROP INDEX api_keys_create_time_id;
ALTER TABLE api_keys DROP COLUMN previous_secret_expire_time;
ALTER TABLE api_keys DROP COLUMN previous_secret_hash;
ALTER TABLE api_keys DROP COLUMN rotate_time;
ALTER TABLE api_keys DROP COLUMN creator;
