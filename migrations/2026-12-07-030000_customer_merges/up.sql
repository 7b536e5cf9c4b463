-- MergeCustomers / UnmergeCustomers (issue 19).
--
-- `customers.merged_into`: set on a source when it is merged (and soft-deleted), cleared
-- when the merge is undone. A catalog-only change (no default, nullable).
--
-- `customer_merges`: one row per merge, the audit record (who, when, under which request
-- id) and everything UnmergeCustomers needs to undo it: the target before and after the
-- merge and each source before it (`0x02 ||` a customer.v1.Customer, as stored responses
-- are), and the notes moved (note id -> its former customer). It holds personal data, so
-- the purge and EraseCustomer delete the rows that name a customer they remove.
ALTER TABLE customers ADD COLUMN merged_into uuid;

CREATE TABLE customer_merges (
    id                 uuid        PRIMARY KEY,
    target_id          uuid        NOT NULL,
    source_ids         uuid[]      NOT NULL,
    actor              text        NOT NULL,
    request_id         uuid,
    merge_time         timestamptz NOT NULL DEFAULT now(),
    changed_fields     text[]      NOT NULL,
    target_before      bytea       NOT NULL,
    target_after       bytea       NOT NULL,
    sources_before     bytea[]     NOT NULL,
    moved_note_ids     uuid[]      NOT NULL,
    moved_note_sources uuid[]      NOT NULL,
    unmerge_time       timestamptz,
    unmerged_by        text
);
CREATE INDEX customer_merges_target_idx ON customer_merges (target_id, merge_time DESC);
CREATE INDEX customer_merges_sources_idx ON customer_merges USING gin (source_ids);
