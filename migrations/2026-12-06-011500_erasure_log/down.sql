DROP TABLE erasure_log;
