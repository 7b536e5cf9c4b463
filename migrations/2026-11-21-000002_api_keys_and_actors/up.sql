-- API keys for service accounts: only a SHA-256 hash of the secret is stored; the secret is
-- shown once at creation.
CREATE TABLE api_keys (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    secret_hash bytea       NOT NULL,
    scopes      text[]      NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz,
    revoke_time timestamptz
);

-- Who made each change (a JWT `sub` or `api-key:{id}`).
ALTER TABLE customers ADD COLUMN created_by text;
ALTER TABLE customers ADD COLUMN updated_by text;
