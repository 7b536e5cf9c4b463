DROP TABLE customer_merges;
ALTER TABLE customers DROP COLUMN merged_into;
