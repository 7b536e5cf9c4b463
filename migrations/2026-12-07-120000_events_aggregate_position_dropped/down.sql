CREATE INDEX CONCURRENTLY IF NOT EXISTS events_aggregate_position_idx ON events (aggregate, position);
