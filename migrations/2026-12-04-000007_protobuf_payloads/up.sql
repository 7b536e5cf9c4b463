-- Events and idempotent replays are stored in a versioned encoding (src/encoding/): one
-- version byte, then a customer.v1 protobuf message, instead of the serde JSON of Rust types.
-- Rows written before keep their version 1 JSON in `events.data` / `request_ids.response`,
-- which is still read; new rows fill only the new columns. Adding a nullable column without a
-- default and dropping NOT NULL change the catalog only: no table rewrite, no long lock.
ALTER TABLE events ADD COLUMN payload bytea;
ALTER TABLE events ALTER COLUMN data DROP NOT NULL;
-- Every event has one or the other. NOT VALID: every existing row has `data` (it was NOT
-- NULL until now), and validating would scan the whole log under an exclusive lock.
ALTER TABLE events ADD CONSTRAINT events_payload_or_data
    CHECK (payload IS NOT NULL OR data IS NOT NULL) NOT VALID;

ALTER TABLE request_ids ADD COLUMN response_pb bytea;
