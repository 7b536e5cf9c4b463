#!/usr/bin/env bash
# duplicates.sh URL [PROBES]: FindDuplicateCustomers' statement (scripts/bench/duplicates.sql,
# the SQL of src/db/duplicates.rs) run PROBES times (default 200) by one pgbench client
# (-M prepared), each probe a random customer of a database seeded by scripts/bench/seed.sql
# (e.g. a copy of make bench's template, BENCH_ROWS=1000000). Every 5th customer gets an
# external id first if none has one (seed.sql writes none). Prints p50/p90/p99/max of the
# per-probe latency in ms: the probe's own primary-key read, BEGIN, the set_config of the
# name threshold, the statement and COMMIT.
set -euo pipefail
url=${1:?usage: duplicates.sh DATABASE_URL [PROBES]}
probes=${2:-200}
cd "$(dirname "$0")"
if [ "$(psql "$url" -qAtc 'SELECT count(*) = 0 FROM customer_external_ids')" = t ]; then
    psql "$url" -q -v ON_ERROR_STOP=1 \
        -c "UPDATE customers SET external_ids = jsonb_build_object('crm', 'CRM-' || (('x' || substr(replace(id::text, '-', ''), 21, 12))::bit(48)::bigint)) WHERE (('x' || substr(replace(id::text, '-', ''), 21, 12))::bit(48)::bigint) % 5 = 0" \
        -c "VACUUM ANALYZE customers" -c "VACUUM ANALYZE customer_external_ids"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat duplicates-probe.sql duplicates.sql > "$work/script.sql"
(cd "$work" && pgbench -n -M prepared -c 1 -t "$probes" -f script.sql --random-seed=7 -l --log-prefix=probe "$url" >/dev/null 2>&1)
cat "$work"/probe.* | awk '{printf "%.3f\n", $3 / 1000}' | sort -n | awk '{v[NR] = $1} END {
    printf "probes %d  p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms\n",
        NR, v[int(NR * 0.5) + 1], v[int(NR * 0.9) + 1], v[int(NR * 0.99) + 1], v[NR] }'
