-- Why a stored response was forgotten (review of issue 16): `purged` when the customer it
-- held reached the end of its retention, `erased` when it was erased (EraseCustomer); NULL
-- while the response is stored. A retry of such a request is answered by this reason alone
-- (NOT_FOUND for the purged customer, FAILED_PRECONDITION `REQUEST_ERASED`), never run
-- again. Nullable, so an older release that does not write it keeps working during a
-- rolling upgrade (the reader falls back on the older rule, below).
ALTER TABLE request_ids ADD COLUMN forgotten_reason text
    CHECK (forgotten_reason IN ('purged', 'erased'));
-- Rows forgotten before the column: a purge kept the owner, an erasure cleared it.
UPDATE request_ids
   SET forgotten_reason = CASE WHEN customer_id IS NULL THEN 'erased' ELSE 'purged' END
 WHERE response IS NULL AND response_pb IS NULL;
