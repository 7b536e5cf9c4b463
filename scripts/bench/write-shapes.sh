#!/usr/bin/env bash
# write-shapes.sh: the body of `make bench-write-shapes`. What PostgreSQL alone can do with
# the statements of one CreateCustomer, sent in different shapes: the database's share of
# the CreateCustomer/pgbench-INSERT target (issue 20), without the service or its client.
#
# pgbench runs each script in scripts/bench/write-shapes/ against its own fresh copy of the
# seeded template (server.sh; the service's own schema, indexes and triggers): run after run
# on one copy, each would start with the tables and GIN pending lists the one before left,
# which moved the ratios by a third between rounds. BENCH_CONCURRENCY
# clients (32) over BENCH_THREADS jobs (2), `-M prepared`, BENCH_DURATION seconds (10) each,
# BENCH_REPEATS rounds (2) in alternating order. Beside each script a second pgbench plays
# the event sequencer (sequencer.sql: one client, every 10 ms, numbering the new events in one
# batch as src/events/sequencer.rs does), so events are numbered as they are in the service
# and its transactions are not counted.
#
# The scripts (the statements and shapes of one CreateCustomer with a request id, copied
# from the service's statement log; a customer id, request id and event id per
# transaction):
# - single-insert: the `pgbench-insert` baseline of `make bench` (one INSERT … RETURNING).
# - today: what the service sends, one round trip each: BEGIN; claim the request id; INSERT
#   the customer RETURNING the row; INSERT its event; store the response; COMMIT.
# - without-request-id: what the service sends for a create without a request id: BEGIN;
#   INSERT … RETURNING; event; COMMIT (four round trips, two statements fewer).
# - four-round-trips: BEGIN; (claim + insert) pipelined; (event + response) pipelined; COMMIT.
# - two-round-trips: (BEGIN + claim + insert) pipelined; (event + response + COMMIT)
#   pipelined: the least a write can send while the event and response are made from the
#   row PostgreSQL returns (its create_time, version).
# - one-round-trip: all six statements in one pipeline.
# - one-statement: claim, insert and event as one statement (data-modifying CTEs), the
#   response stored with the claim: only possible if the service made the row's timestamps.
#
# Output: tps per script and round, and the ratio to single-insert of the same round.
# Settings: BENCH_ROWS, BENCH_DURATION, BENCH_CONCURRENCY, BENCH_THREADS, BENCH_REPEATS,
# BENCH_SHAPES (a comma list of script names), and those of server.sh. The database copy
# (BENCH_DB_NAME, default customer_api_bench_shapes) is dropped at the end.
set -euo pipefail

SERVER_START=manual
BENCH_DB_NAME=${BENCH_DB_NAME:-customer_api_bench_shapes}
source "$(dirname "$0")/server.sh"

DIR=$ROOT/scripts/bench/write-shapes
DURATION=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CONCURRENCY:-32}
THREADS=${BENCH_THREADS:-2}
REPEATS=${BENCH_REPEATS:-2}
IFS=, read -r -a shapes <<<"${BENCH_SHAPES:-single-insert,today,without-request-id,four-round-trips,two-round-trips,one-round-trip,one-statement}"
for shape in "${shapes[@]}"; do
    [ -f "$DIR/$shape.sql" ] || { echo "no script $DIR/$shape.sql" >&2; exit 1; }
done

trap 'drop_db "$BENCH_DB"' EXIT
url=$BENCH_URL

# tps of one script on a fresh copy, the sequencer running beside it.
measure() {
    fresh_database
    pgbench -n -M prepared -c 1 -j 1 -T "$DURATION" -f "$DIR/sequencer.sql" "$url" \
        >"$OUT/write-shapes-sequencer.log" 2>&1 &
    local sequencer=$!
    local tps
    tps=$(pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -f "$DIR/$1.sql" "$url" \
        2>"$OUT/write-shapes.log" | awk '/^tps = / { printf "%.0f", $3 }')
    wait "$sequencer" || { cat "$OUT/write-shapes-sequencer.log" >&2; exit 1; }
    [ -n "$tps" ] || { cat "$OUT/write-shapes.log" >&2; exit 1; }
    echo "$tps"
}

declare -A results
for ((round = 1; round <= REPEATS; round++)); do
    order=("${shapes[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#shapes[@]} - 1; i >= 0; i--)); do order+=("${shapes[i]}"); done
    fi
    for shape in "${order[@]}"; do
        log "round $round: $shape"
        results[$shape,$round]=$(measure "$shape")
    done
done

echo
echo "| script | tps per round | × single-insert of the same round |"
echo "|---|--:|--:|"
for shape in "${shapes[@]}"; do
    tps=() ratios=()
    for ((round = 1; round <= REPEATS; round++)); do
        tps+=("${results[$shape,$round]}")
        base=${results[single-insert,$round]:-}
        [ -z "$base" ] || ratios+=("$(awk -v a="${results[$shape,$round]}" -v b="$base" 'BEGIN { printf "%.2f", a / b }')")
    done
    printf '| %s | %s | %s |\n' "$shape" "$(IFS=/; echo "${tps[*]}" | sed 's|/| · |g')" "$(IFS=/; echo "${ratios[*]:-n/a}" | sed 's|/| · |g')"
done
