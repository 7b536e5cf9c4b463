\sleep 10 ms
BEGIN;
SELECT last_position AS lp FROM event_log FOR UPDATE \gset
WITH batch AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM events WHERE position IS NULL ORDER BY id LIMIT 1000), numbered AS (UPDATE events e SET position = :lp + batch.n FROM batch WHERE e.id = batch.id RETURNING e.position) SELECT coalesce(max(position), :lp) AS last FROM numbered \gset
UPDATE event_log SET last_position = :last;
SELECT pg_notify('customer_api_events', :last::text);
COMMIT;
