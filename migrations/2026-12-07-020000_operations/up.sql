-- Long-running operations (AIP-151; issue 18's ImportCustomers). One row per operation,
-- readable by its creator (or an admin). An import's row is also its resume point and its
-- replay record: every batch updates it in the batch's own transaction, so the customers and
-- events of a batch and the progress that says they were written commit together.
-- `rows_consumed` counts the input rows (valid or not) the committed batches covered: a
-- re-sent import with the same request id (the operation's id) skips that many rows.
CREATE TABLE operations (
    id               uuid        PRIMARY KEY,
    kind             text        NOT NULL,
    creator          text        NOT NULL,
    fingerprint      bytea       NOT NULL,
    -- 1 running, 2 interrupted (its upload broke off; a re-send resumes it),
    -- 3 succeeded, 4 failed, 5 cancelled.
    state            smallint    NOT NULL,
    cancel_requested boolean     NOT NULL DEFAULT false,
    mode             smallint    NOT NULL,
    validate_only    boolean     NOT NULL,
    rows_read        bigint      NOT NULL DEFAULT 0,
    rows_consumed    bigint      NOT NULL DEFAULT 0,
    rows_committed   bigint      NOT NULL DEFAULT 0,
    rows_rejected    bigint      NOT NULL DEFAULT 0,
    created          bigint      NOT NULL DEFAULT 0,
    updated          bigint      NOT NULL DEFAULT 0,
    unchanged        bigint      NOT NULL DEFAULT 0,
    -- The rejected rows so far (at most 1,000), an encoded ImportCustomersResponse.
    report           bytea,
    error_code       integer,
    error_message    text,
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operations_creator_idx ON operations (creator, id DESC);
