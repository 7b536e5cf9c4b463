-- ApiKeyService (issue 16 item 10): keys managed over the API, rotated with an optional grace
-- period, and every creation, rotation and revocation audited with its caller.

-- Who created the key (a token's `sub`, `api-key:{id}`, or `cli`); NULL for keys created
-- before this migration.
ALTER TABLE api_keys ADD COLUMN creator text;
ALTER TABLE api_keys ADD COLUMN rotate_time timestamptz;
-- The secret before the last rotation, accepted until `previous_secret_expire_time`.
ALTER TABLE api_keys ADD COLUMN previous_secret_hash bytea;
ALTER TABLE api_keys ADD COLUMN previous_secret_expire_time timestamptz;

-- ListApiKeys pages newest first.
CREATE INDEX api_keys_create_time_id ON api_keys (create_time DESC, id DESC);

-- The audit trail: no secrets, no hashes; kept as long as the key.
CREATE TABLE api_key_audit (
    id          bigserial   PRIMARY KEY,
    api_key_id  uuid        NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    action      text        NOT NULL CHECK (action IN ('CREATED', 'ROTATED', 'REVOKED')),
    actor       text        NOT NULL,
    request_id  uuid,
    occur_time  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_key_audit_key ON api_key_audit (api_key_id, id);
