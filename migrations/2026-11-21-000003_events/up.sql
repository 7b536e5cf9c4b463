-- The transactional outbox: one row per change, written in the change's transaction.
--
-- `id` only records insertion order. Transactions commit in a different order than they
-- insert, so readers never page by it: the sequencer assigns `position` after commit, in
-- commit order, under the row lock of `event_log` (see src/events/sequencer.rs). Positions
-- become visible as a gap-free prefix, which is what the change stream resumes by.
CREATE TABLE events (
    id           bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    -- The resource the event is about (`customers/{id}`); `sequence` counts its events.
    aggregate    text        NOT NULL,
    sequence     bigint      NOT NULL CHECK (sequence > 0),
    event_type   text        NOT NULL,
    -- The domain event (snapshot, diff) as JSON; encoded to protobuf when read.
    data         jsonb       NOT NULL,
    actor        text        NOT NULL,
    request_id   uuid,
    occur_time   timestamptz NOT NULL DEFAULT clock_timestamp(),
    position     bigint      UNIQUE,
    publish_time timestamptz,
    UNIQUE (aggregate, sequence)
);
CREATE INDEX events_unsequenced_idx ON events (id) WHERE position IS NULL;
CREATE INDEX events_unpublished_idx ON events (position)
    WHERE publish_time IS NULL AND position IS NOT NULL;
CREATE INDEX events_aggregate_position_idx ON events (aggregate, position);
CREATE INDEX events_occur_time_idx ON events (occur_time);

-- One row: the last assigned position (its row lock serialises sequencers across
-- instances) and the highest position removed by retention (older resume tokens are
-- OUT_OF_RANGE).
CREATE TABLE event_log (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_position  bigint  NOT NULL DEFAULT 0,
    pruned_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO event_log DEFAULT VALUES;
