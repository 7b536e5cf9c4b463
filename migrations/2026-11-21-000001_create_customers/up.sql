-- Customers, soft-deletable (AIP-164), with optimistic concurrency by `version` (AIP-154).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE customers (
    id          uuid        PRIMARY KEY,
    given_name  text        NOT NULL CHECK (length(given_name) BETWEEN 1 AND 200),
    family_name text        NOT NULL CHECK (length(family_name) BETWEEN 1 AND 200),
    email       text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    phone       text,
    address     jsonb,
    status      smallint    NOT NULL CHECK (status BETWEEN 1 AND 3),
    company     text,
    business_id text,
    labels      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version     bigint      NOT NULL DEFAULT 1,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    delete_time timestamptz
);

-- An email belongs to at most one live customer, compared case-insensitively; a deleted
-- customer's email is free again.
CREATE UNIQUE INDEX customers_live_email_key ON customers (lower(email)) WHERE delete_time IS NULL;
CREATE INDEX customers_email_lower_idx ON customers (lower(email));

-- Keyset pagination: every order_by key, with the id as tie-breaker.
CREATE INDEX customers_create_time_idx ON customers (create_time, id);
CREATE INDEX customers_update_time_idx ON customers (update_time, id);
CREATE INDEX customers_family_name_idx ON customers (family_name, id);
CREATE INDEX customers_given_name_idx ON customers (given_name, id);
CREATE INDEX customers_email_idx ON customers (email, id);

-- Equality filters.
CREATE INDEX customers_phone_idx ON customers (phone) WHERE phone IS NOT NULL;
CREATE INDEX customers_company_idx ON customers (company) WHERE company IS NOT NULL;
CREATE INDEX customers_business_id_idx ON customers (business_id) WHERE business_id IS NOT NULL;
CREATE INDEX customers_status_idx ON customers (status);
CREATE INDEX customers_labels_idx ON customers USING gin (labels jsonb_path_ops);

-- Case-insensitive contains-search (`given_name:"ann"`) through trigram indexes.
CREATE INDEX customers_given_name_trgm_idx ON customers USING gin (given_name gin_trgm_ops);
CREATE INDEX customers_family_name_trgm_idx ON customers USING gin (family_name gin_trgm_ops);
CREATE INDEX customers_email_trgm_idx ON customers USING gin (email gin_trgm_ops);

-- Request ids (AIP-155): the first response of a write, replayed to retries.
CREATE TABLE request_ids (
    request_id  uuid        PRIMARY KEY,
    fingerprint bytea       NOT NULL,
    response    jsonb,
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX request_ids_create_time_idx ON request_ids (create_time);
