\set c random(1, 281474976710655)
BEGIN;
\startpipeline
INSERT INTO "request_ids" ("request_id", "fingerprint") VALUES (('00000000-0000-4000-8000-' || lpad(to_hex(:c::bigint), 12, '0'))::uuid, decode(repeat('02', 33), 'hex')) ON CONFLICT ("request_id") DO NOTHING;
INSERT INTO "customers" ("id", "created_by", "given_name", "family_name", "email", "phone", "address", "status", "company", "business_id", "labels", "external_ids", "updated_by") VALUES (('00000000-0000-7000-9000-' || lpad(to_hex(:c::bigint), 12, '0'))::uuid, 'bench', 'Grace', 'Benchley', 'bench.' || :c::bigint || '@example.com', '+15100001331', '{"lines": ["1 Load Street"], "region": "CA", "locality": "Oakland", "postal_code": "94601", "country_code": "US"}', 1, NULL, NULL, '{"tier": "gold"}', '{}', 'bench') RETURNING "customers"."id", "customers"."given_name", "customers"."family_name", "customers"."email", "customers"."phone", "customers"."address", "customers"."status", "customers"."company", "customers"."business_id", "customers"."labels", "customers"."external_ids", "customers"."version", "customers"."create_time", "customers"."update_time", "customers"."delete_time", "customers"."merged_into";
\endpipeline
\startpipeline
INSERT INTO "events" ("event_id", "aggregate", "sequence", "event_type", "payload", "actor", "request_id", "traceparent") VALUES (('00000000-0000-7000-a000-' || lpad(to_hex(:c::bigint), 12, '0'))::uuid, 'customers/' || ('00000000-0000-7000-9000-' || lpad(to_hex(:c::bigint), 12, '0'))::uuid, 1, 'CustomerRegistered', decode(repeat('0a2e', 125), 'hex'), 'bench', ('00000000-0000-4000-8000-' || lpad(to_hex(:c::bigint), 12, '0'))::uuid, NULL);
UPDATE request_ids SET response_pb = decode(repeat('0a2e', 125), 'hex'), customer_id = ('00000000-0000-7000-9000-' || lpad(to_hex(:c::bigint), 12, '0'))::uuid WHERE request_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:c::bigint), 12, '0'))::uuid;
\endpipeline
COMMIT;
