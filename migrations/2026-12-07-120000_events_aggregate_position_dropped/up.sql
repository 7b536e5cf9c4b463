-- Every query by aggregate has another index (EXPLAIN ANALYZE of the service's SQL):
-- `aggregate = $1` uses events_aggregate_sequence_key, or events_aggregate_prefix_idx
-- (aggregate text_pattern_ops, position; text_pattern_ops has the equality operator) in
-- position order, and `aggregate LIKE 'prefix%'` uses the latter. Meanwhile each event paid
-- for an entry here twice: at its insert, and at the sequencer's numbering, an update that
-- cannot be HOT because `position` is indexed (issue 20, pass 12). CONCURRENTLY, so writes go
-- on while it is dropped.
DROP INDEX CONCURRENTLY IF EXISTS events_aggregate_position_idx;
