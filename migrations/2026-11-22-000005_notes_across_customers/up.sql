-- ListNotes with parent `customers/-`: every live customer's notes, newest first, paged by
-- (create_time, id) like one customer's.
CREATE INDEX notes_create_time_idx ON notes (create_time DESC, id DESC);
