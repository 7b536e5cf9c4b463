-- The W3C trace context (`traceparent`) of the request that wrote each event, so the relay
-- can carry it on the published message (CloudEvents distributed tracing extension) and a
-- consumer can link its processing to that request. NULL when the request was not traced
-- (and in every event written before). A nullable column without a default changes the
-- catalog only: no table rewrite, no long lock.
ALTER TABLE events ADD COLUMN traceparent text;
