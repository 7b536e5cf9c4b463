DROP TRIGGER customers_claim_external_ids ON customers;
DROP FUNCTION customers_claim_external_ids();
DROP TABLE customer_external_ids;
ALTER TABLE customers DROP COLUMN external_ids;
