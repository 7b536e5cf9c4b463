DROP INDEX IF EXISTS events_aggregate_prefix_idx;
DROP TABLE IF EXISTS notes;
DROP INDEX IF EXISTS customers_live_company_idx;
DROP TABLE IF EXISTS companies;
