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
# The statements of one CreateCustomer with a request id, copied from the service's statement
# log, are each in a file of scripts/bench/write-shapes/ (claim, insert, event, response; ids
# sets the customer, request and event ids of a transaction). The shapes group them into
# round trips: `/` ends one, and a round trip of several statements is a pgbench pipeline.
# - single-insert: the `pgbench-insert` baseline of `make bench`, as customer-bench prints it
#   (`--print-pgbench-script insert`), so both compare against the same statement.
# - claim-last: what the service sends since pass 12, one round trip each: BEGIN; insert;
#   event; the claim with the response as one INSERT (claim-last.sql); COMMIT.
# - claim-first: what it sent before (pass 11's `today`): BEGIN; claim; insert; event;
#   response (an UPDATE of the claim); COMMIT.
# - claim-last-pipelined (only when named): claim-last with the event and the claim as one
#   pipeline.
# - without-request-id: what it sends for a create without a request id (no claim, no
#   stored response; the event's request id is NULL).
# - four-round-trips: BEGIN; (claim + insert); (event + response); COMMIT.
# - four-round-trips-savepoint (only when named in BENCH_SHAPES): the same with a SAVEPOINT
#   between the claim and the insert, which a speculative insert needs to be undone when
#   the claim finds the request id used.
# - two-round-trips: (BEGIN + claim + insert); (event + response + COMMIT): the least a write
#   can send while the event and response are made from the row PostgreSQL returns (its
#   create_time, version).
# - one-round-trip: all six statements in one pipeline.
# - merged (only when named in BENCH_SHAPES): four statements in four round trips, the claim
#   and the insert as one (`WITH claim AS (INSERT … ON CONFLICT DO NOTHING RETURNING …)
#   INSERT … SELECT … FROM claim`: a used id inserts nothing), the event and the stored
#   response as another.
# - one-statement (one-statement.sql): claim, insert and event as one statement
#   (data-modifying CTEs), the response stored with the claim: only possible if the service
#   made the row's timestamps.
#
# Output: tps per script and round, and the ratio to single-insert of the same round.
# Settings: BENCH_ROWS, BENCH_DURATION, BENCH_CONCURRENCY, BENCH_THREADS, BENCH_REPEATS,
# BENCH_SHAPES (a comma list of script names), and those of server.sh. The database copy
# (BENCH_DB_NAME, default customer_api_bench_shapes) is dropped at the end.
set -euo pipefail

SERVER_START=manual
BENCH_DB_NAME=${BENCH_DB_NAME:-customer_api_bench_shapes}
source "$(dirname "$0")/server.sh"
BENCH=$ROOT/target/release/customer-bench
[ -x "$BENCH" ] || { echo "build first: cargo build --release -p customer-bench" >&2; exit 1; }

DIR=$ROOT/scripts/bench/write-shapes
DURATION=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CONCURRENCY:-32}
THREADS=${BENCH_THREADS:-2}
REPEATS=${BENCH_REPEATS:-2}
IFS=, read -r -a shapes <<<"${BENCH_SHAPES:-single-insert,claim-last,claim-first,without-request-id,four-round-trips,two-round-trips,one-round-trip,one-statement}"
declare -A ROUND_TRIPS=(
    [claim-first]="BEGIN / claim / insert / event / response / COMMIT"
    [without-request-id]="BEGIN / insert / event-without-request-id / COMMIT"
    [four-round-trips]="BEGIN / claim insert / event response / COMMIT"
    [four-round-trips-savepoint]="BEGIN / claim SAVEPOINT insert / event response / COMMIT"
    [merged]="BEGIN / claim-and-insert / event-and-response / COMMIT"
    [claim-last]="BEGIN / insert / event / claim-last / COMMIT"
    [claim-last-pipelined]="BEGIN / insert / event claim-last / COMMIT"
    [two-round-trips]="BEGIN claim insert / event response COMMIT"
    [one-round-trip]="BEGIN claim insert event response COMMIT"
)
SCRIPTS=$OUT/write-shapes
mkdir -p "$SCRIPTS"
# script SHAPE: writes $SCRIPTS/SHAPE.sql: the baseline as customer-bench prints it, or the
# transaction's ids and then its round trips (or a statement of its own).
script() {
    local shape=$1 out=$SCRIPTS/$1.sql
    if [ "$shape" = single-insert ]; then
        "$BENCH" --print-pgbench-script insert >"$out"
        return
    fi
    cat "$DIR/ids.sql" >"$out"
    if [ -z "${ROUND_TRIPS[$shape]:-}" ]; then
        [ -f "$DIR/$shape.sql" ] || { echo "no shape $shape" >&2; exit 1; }
        cat "$DIR/$shape.sql" >>"$out"
        return
    fi
    local trip statement
    IFS=/ read -r -a trips <<<"${ROUND_TRIPS[$shape]}"
    for trip in "${trips[@]}"; do
        read -r -a statements <<<"$trip"
        ((${#statements[@]} == 1)) || echo '\startpipeline' >>"$out"
        for statement in "${statements[@]}"; do
            case $statement in
            BEGIN | COMMIT) echo "$statement;" >>"$out" ;;
            SAVEPOINT) echo "SAVEPOINT speculative;" >>"$out" ;;
            *) cat "$DIR/$statement.sql" >>"$out" ;;
            esac
        done
        ((${#statements[@]} == 1)) || echo '\endpipeline' >>"$out"
    done
}
for shape in "${shapes[@]}"; do
    script "$shape"
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
    tps=$(pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -f "$SCRIPTS/$1.sql" "$url" \
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
