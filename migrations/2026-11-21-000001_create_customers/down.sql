DROP TABLE request_ids;
DROP TABLE customers;
