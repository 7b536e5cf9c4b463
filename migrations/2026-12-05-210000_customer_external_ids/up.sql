-- A customer's keys in other systems (issue 18): `customers.external_ids` is the map a
-- client reads and writes (source -> id), read with the row and filtered through its GIN
-- index (`external_ids.crm = "4711"` is containment, `@>`); `customer_external_ids` holds
-- one row per (source, id) of every *live* customer, so its primary key makes a pair unique
-- among live customers and a lookup by key is one index probe.
--
-- The trigger keeps the two in step for every writer (this release, an older one during a
-- rolling upgrade, a future bulk path): a soft delete releases the customer's pairs, an
-- undelete or a write claims them again. A pair another live customer holds is raised as a
-- unique violation of `customer_external_ids_live_key` whose DETAIL is JSON naming the pair
-- and its holder ({"source", "id", "customer"}), so the service can say which key collided
-- without parsing a localised message.
--
-- A column with a constant default changes the catalog only (no table rewrite).
ALTER TABLE customers ADD COLUMN external_ids jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX customers_external_ids_idx ON customers USING gin (external_ids jsonb_path_ops);

CREATE TABLE customer_external_ids (
    source      text NOT NULL,
    external_id text NOT NULL,
    customer_id uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    PRIMARY KEY (source, external_id)
);
CREATE INDEX customer_external_ids_customer_idx ON customer_external_ids (customer_id);

CREATE FUNCTION customers_claim_external_ids() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    taken record;
    holder uuid;
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.external_ids = OLD.external_ids
       AND (NEW.delete_time IS NULL) = (OLD.delete_time IS NULL) THEN
        RETURN NULL;
    END IF;
    DELETE FROM customer_external_ids WHERE customer_id = NEW.id;
    IF NEW.delete_time IS NOT NULL THEN
        RETURN NULL;
    END IF;
    -- ON CONFLICT DO NOTHING waits for a concurrent writer of the same pair and skips it
    -- if that one commits: the pairs not inserted are the taken ones.
    WITH wanted AS (
        SELECT key AS source, value AS external_id FROM jsonb_each_text(NEW.external_ids)
    ), inserted AS (
        INSERT INTO customer_external_ids (source, external_id, customer_id)
        SELECT source, external_id, NEW.id FROM wanted
        ON CONFLICT DO NOTHING
        RETURNING source, external_id
    )
    SELECT w.source, w.external_id INTO taken
    FROM wanted w
    WHERE NOT EXISTS (
        SELECT 1 FROM inserted i WHERE i.source = w.source AND i.external_id = w.external_id
    )
    ORDER BY w.source
    LIMIT 1;
    IF FOUND THEN
        SELECT customer_id INTO holder FROM customer_external_ids
        WHERE source = taken.source AND external_id = taken.external_id;
        RAISE EXCEPTION 'external id %:% is taken', taken.source, taken.external_id
            USING ERRCODE = 'unique_violation',
                  CONSTRAINT = 'customer_external_ids_live_key',
                  TABLE = 'customer_external_ids',
                  DETAIL = json_build_object(
                      'source', taken.source, 'id', taken.external_id, 'customer', holder
                  )::text;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER customers_claim_external_ids
    AFTER INSERT OR UPDATE OF external_ids, delete_time ON customers
    FOR EACH ROW EXECUTE FUNCTION customers_claim_external_ids();
