-- The erasure log (issue 19): one row per EraseCustomer, the proof that a customer was
-- erased, when, by whom and why. It holds no personal data: the customer's former id (a
-- random UUID nothing links to a person any more), a reason from a closed list, the
-- caller's reference (a ticket id, shaped so that it cannot hold an address or a sentence)
-- and counts. One erasure per customer: the row is gone after the first.
CREATE TABLE erasure_log (
    customer_id     uuid        PRIMARY KEY,
    reason          text        NOT NULL CHECK (reason ~ '^[A-Z_]{1,40}$'),
    reference       text        CHECK (reference ~ '^[A-Za-z0-9._:-]{1,64}$'),
    actor           text        NOT NULL,
    request_id      uuid,
    erase_time      timestamptz NOT NULL DEFAULT now(),
    notes_erased    bigint      NOT NULL,
    events_scrubbed bigint      NOT NULL,
    replays_erased  bigint      NOT NULL
);
CREATE INDEX erasure_log_erase_time_idx ON erasure_log (erase_time);
