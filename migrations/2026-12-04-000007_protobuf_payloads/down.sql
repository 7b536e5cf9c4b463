-- Back to version 1 JSON only. Events written in version 2 have no `data`: restoring NOT
-- NULL then fails (and with it this whole migration) rather than deleting history.
ALTER TABLE events DROP CONSTRAINT events_payload_or_data;
ALTER TABLE events ALTER COLUMN data SET NOT NULL;
ALTER TABLE events DROP COLUMN payload;

-- Responses stored in version 2 cannot be replayed by a release that reads only JSON; their
-- request ids are forgotten (they are kept for a day at most anyway), so a retry runs again
-- instead of failing.
DELETE FROM request_ids WHERE response IS NULL;
ALTER TABLE request_ids DROP COLUMN response_pb;
