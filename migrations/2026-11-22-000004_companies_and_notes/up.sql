-- Companies (soft-deletable, like customers) and notes on customers (hard-deleted).

CREATE TABLE companies (
    id           uuid        PRIMARY KEY,
    display_name text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    domain       text        CHECK (length(domain) BETWEEN 1 AND 253),
    business_id  text,
    labels       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version      bigint      NOT NULL DEFAULT 1,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    delete_time  timestamptz,
    created_by   text,
    updated_by   text
);

-- A business id belongs to at most one live company; a deleted company's id is free again.
CREATE UNIQUE INDEX companies_live_business_id_key ON companies (business_id)
    WHERE delete_time IS NULL AND business_id IS NOT NULL;

-- Keyset pagination over every order_by key, with the id as tie-breaker.
CREATE INDEX companies_create_time_idx ON companies (create_time, id);
CREATE INDEX companies_update_time_idx ON companies (update_time, id);
CREATE INDEX companies_display_name_idx ON companies (display_name, id);

-- Equality and contains filters.
CREATE INDEX companies_domain_idx ON companies (domain) WHERE domain IS NOT NULL;
CREATE INDEX companies_labels_idx ON companies USING gin (labels jsonb_path_ops);
CREATE INDEX companies_display_name_trgm_idx ON companies USING gin (display_name gin_trgm_ops);

-- "Live customers of this company" (DeleteCompany's precondition, ListCustomers by parent).
CREATE INDEX customers_live_company_idx ON customers (company) WHERE delete_time IS NULL;

CREATE TABLE notes (
    id          uuid        PRIMARY KEY,
    -- Customers are never hard-deleted, so a note always has its customer.
    customer_id uuid        NOT NULL REFERENCES customers (id),
    text        text        NOT NULL CHECK (length(text) BETWEEN 1 AND 10000),
    author      text        NOT NULL,
    version     bigint      NOT NULL DEFAULT 1,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);

-- ListNotes: a customer's notes, newest first, keyset-paginated.
CREATE INDEX notes_customer_create_time_idx ON notes (customer_id, create_time DESC, id DESC);

-- Watching `customers/{id}` includes the events of its notes (`customers/{id}/notes/…`):
-- a prefix match, which needs the pattern operator class under a non-C collation.
CREATE INDEX events_aggregate_prefix_idx ON events (aggregate text_pattern_ops, position);
