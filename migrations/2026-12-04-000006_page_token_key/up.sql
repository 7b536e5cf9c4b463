-- Secret keys the service generates once and every replica then shares: the page-token key
-- when PAGE_TOKEN_KEY is not configured (see src/db/keys.rs). Additive: older binaries never
-- read the table.
CREATE TABLE service_keys (
    name        text        PRIMARY KEY,
    key         bytea       NOT NULL CHECK (octet_length(key) = 32),
    create_time timestamptz NOT NULL DEFAULT now()
);
