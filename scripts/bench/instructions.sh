#!/usr/bin/env bash
# instructions.sh: the body of `make bench-instructions` (the Makefile builds the release
# server and customer-bench first). Instructions the server executes per request, counted
# by valgrind's callgrind: exact and repeatable whatever else a shared machine is doing, so a
# change of a few per cent shows, where throughput moves by a third between identical runs.
#
# For each build (the current one, and BENCH_BASE_BIN before it when given), BENCH_REPEATS
# times, alternating the order:
#  1. a fresh copy of the seeded template (scripts/bench/server.sh) and the server under
#     `valgrind --tool=callgrind`, authentication on;
#  2. customer-bench in fixed-count mode, for each scenario: BENCH_WARMUP_REQUESTS requests
#     (connections, caches, prepared statements), `callgrind_control --zero`, exactly
#     BENCH_REQUESTS requests, `callgrind_control --dump`; instructions per request = the
#     dump's total / BENCH_REQUESTS (the server's own instructions only: valgrind counts no
#     other process, not PostgreSQL's, not the client's);
#  3. an idle block of BENCH_IDLE_SECONDS with no request, which bounds what the server's
#     timers add to a block (reported as a share of each count).
# The server runs without NATS_URL (no relay publishing: its work is asynchronous and timed,
# not part of a request) and with HEALTH_PROBE_INTERVAL=1h (a probe every 2 s would add
# per-second, not per-request, work); everything a request does itself is counted, including
# the event sequencer's run that a write wakes.
#
# The table (markdown, appended to BENCHMARKS.md; made by instructions-table.awk from the raw
# counts in target/bench/instructions.tsv) gives per scenario the mean over the repeats with
# every run in brackets, and with a base build the ratio current / base, marked where it
# exceeds 1 + BENCH_TOLERANCE (0.05).
#
# Scenarios (BENCH_SCENARIOS, customer-bench's names): get-grpc (GetCustomer of a random
# seeded customer), list-first (ListCustomers, first page of 50, default order), search
# (ListCustomers with `family_name:"…"`, 16 seeded names of 0.1% each), create
# (CreateCustomer, a distinct email and request id every time). Others work too
# (get-rest, get-grpc-web, get-rest-h2, list-deep, update, mixed).
#
# Settings (environment): BENCH_REQUESTS (2000 per scenario), BENCH_WARMUP_REQUESTS (300),
# BENCH_REPEATS (2), BENCH_CONCURRENCY (32 in flight) over BENCH_CONNECTIONS (4 HTTP/2
# connections), BENCH_IDLE_SECONDS (5), BENCH_SERVER_BIN and BENCH_SERVER_LABEL (the current
# build; default the release build of this checkout, labelled by its commit),
# BENCH_BASE_BIN and BENCH_BASE_LABEL (the build to compare with, e.g. an older commit's
# target/release/customer-api; its CLI and environment must match: `serve`, `migrate`,
# `token`, DATABASE_URL, LISTEN_ADDR …), BENCH_MARKDOWN (BENCHMARKS.md; empty to skip),
# BENCH_TOLERANCE (0.05), and those of server.sh. An older build runs on the current schema
# (migrations are backward compatible, so it finds every table and column it knows).
# BENCH_BASE_ENV and BENCH_SERVER_ENV (`VAR=value …`, split on spaces) are added to that
# build's server environment only, so one binary can be compared with itself under two
# settings (BENCH_BASE_BIN = BENCH_SERVER_BIN, e.g. `RUST_LOG=info,access=off`, or tracing on
# with `OTEL_EXPORTER_OTLP_ENDPOINT=…`); settings for both builds come from the environment.
set -euo pipefail

for tool in valgrind callgrind_control curl; do
    command -v "$tool" >/dev/null || {
        echo "make bench-instructions needs $tool (Debian: apt-get install valgrind curl)" >&2
        exit 1
    }
done
SERVER_START=manual
source "$(dirname "$0")/server.sh"
BENCH=$ROOT/target/release/customer-bench
[ -x "$BENCH" ] || { echo "build first: cargo build --release -p customer-bench" >&2; exit 1; }

REQUESTS=${BENCH_REQUESTS:-2000}
WARMUP_REQUESTS=${BENCH_WARMUP_REQUESTS:-300}
REPEATS=${BENCH_REPEATS:-2}
CONCURRENCY=${BENCH_CONCURRENCY:-32}
CONNECTIONS=${BENCH_CONNECTIONS:-4}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-5}
SCENARIOS=${BENCH_SCENARIOS:-get-grpc,list-first,search,create}
TOLERANCE=${BENCH_TOLERANCE:-0.05}
MARKDOWN=${BENCH_MARKDOWN-$ROOT/BENCHMARKS.md}
for n in "$REQUESTS" "$WARMUP_REQUESTS" "$REPEATS" "$CONCURRENCY" "$CONNECTIONS" "$IDLE_SECONDS"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "BENCH_REQUESTS, BENCH_WARMUP_REQUESTS, BENCH_REPEATS, BENCH_CONCURRENCY, BENCH_CONNECTIONS and BENCH_IDLE_SECONDS are whole numbers" >&2; exit 1; }
done
[ "$REQUESTS" -gt 0 ] && [ "$REPEATS" -gt 0 ] || { echo "BENCH_REQUESTS and BENCH_REPEATS must be at least 1" >&2; exit 1; }

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . ':!BENCHMARKS.md' 2>/dev/null || commit="$commit (with uncommitted changes)"
# Builds as label=path, the base first; build_env[i] is build i's own server settings.
builds=()
build_env=()
if [ -n "${BENCH_BASE_BIN:-}" ]; then
    [ -x "$BENCH_BASE_BIN" ] || { echo "BENCH_BASE_BIN=$BENCH_BASE_BIN is not an executable" >&2; exit 1; }
    builds+=("${BENCH_BASE_LABEL:-$(basename "$BENCH_BASE_BIN")}=$BENCH_BASE_BIN")
    build_env+=("${BENCH_BASE_ENV:-}")
fi
if [ -n "${BENCH_SERVER_BIN:-}" ]; then
    builds+=("${BENCH_SERVER_LABEL:-$(basename "$BENCH_SERVER_BIN")}=$BIN")
else
    builds+=("${BENCH_SERVER_LABEL:-$commit}=$BIN")
fi
build_env+=("${BENCH_SERVER_ENV:-}")
[ "${builds[0]%%=*}" != "${builds[-1]%%=*}" ] || [ "${#builds[@]}" = 1 ] \
    || { echo "the two builds need different labels (BENCH_BASE_LABEL, BENCH_SERVER_LABEL)" >&2; exit 1; }

CALLGRIND=$OUT/callgrind
RESULTS=$OUT/instructions.tsv
rm -rf "$CALLGRIND"
mkdir -p "$CALLGRIND"
# label, repeat, scenario, requests, seconds, instructions (total), what
: >"$RESULTS"

# dump_total DIR LABEL: the instruction total of the dump that `callgrind_control
# --dump=LABEL` wrote (its header says "desc: Trigger: dump LABEL").
dump_total() {
    local file
    file=$(grep -l -x -F "desc: Trigger: dump $2" "$1"/callgrind.out.*.* 2>/dev/null | head -1)
    [ -n "$file" ] || { echo "no callgrind dump named $2 in $1" >&2; return 1; }
    awk '/^(summary|totals):/ {print $2; exit}' "$file"
}

# control ARGS...: callgrind_control, quiet unless it fails (then its output, and a failure;
# callgrind_control itself exits 0 even when it finds no such process).
cat >"$OUT/callgrind-control" <<'SH'
#!/bin/sh
out=$(callgrind_control "$@" 2>&1)
case $out in
*Error*) ;;
*"sending command"*) exit 0 ;;
esac
echo "callgrind_control $*: $out" >&2
exit 1
SH
chmod +x "$OUT/callgrind-control"
control=$OUT/callgrind-control

# measure LABEL BIN REPEAT [VAR=value...]: one server lifetime under callgrind, with the
# build's own settings.
measure() {
    local label=$1 repeat=$3 dir
    BIN=$2
    shift 3
    dir=$CALLGRIND/$repeat-$(printf %s "$label" | tr -c 'A-Za-z0-9._-' _)
    mkdir -p "$dir"
    start_server env -u NATS_URL HEALTH_PROBE_INTERVAL=1h "$@" \
        valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out.%p"
    for _ in $(seq 1 600); do
        curl -fs "http://$ADDR/readyz" >/dev/null 2>&1 && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
        sleep 0.5
    done
    log "$label, run $repeat: $SCENARIOS, $REQUESTS requests each after $WARMUP_REQUESTS of warm-up"
    BENCH_TOKEN=$TOKEN "$BENCH" --addr "$ADDR" --rows "$ROWS" \
        --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" --scenarios "$SCENARIOS" \
        --requests "$REQUESTS" --warmup-requests "$WARMUP_REQUESTS" \
        --before-block "$control --zero $SERVER_PID" \
        --after-block "$control --dump={scenario} $SERVER_PID" \
        >"$dir/blocks.tsv"
    $control --zero "$SERVER_PID"
    sleep "$IDLE_SECONDS"
    $control --dump=idle "$SERVER_PID"
    local name requests seconds what total
    while IFS=$'\t' read -r name requests seconds what; do
        total=$(dump_total "$dir" "$name")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$repeat" "$name" "$requests" "$seconds" "$total" "$what" >>"$RESULTS"
        log "  $name: $((total / requests)) instructions per request ($requests in $seconds s)"
    done <"$dir/blocks.tsv"
    total=$(dump_total "$dir" idle)
    printf '%s\t%s\tidle\t0\t%s\t%s\tno request\n' "$label" "$repeat" "$IDLE_SECONDS" "$total" >>"$RESULTS"
    log "  idle: $((total / IDLE_SECONDS)) instructions per second"
    stop_server
}

for repeat in $(seq 1 "$REPEATS"); do
    order=("${!builds[@]}")
    # Alternate the order so that nothing about the sequence favours one build.
    if [ $((repeat % 2)) = 0 ]; then
        order=()
        for ((i = ${#builds[@]} - 1; i >= 0; i--)); do order+=("$i"); done
    fi
    for i in "${order[@]}"; do
        # shellcheck disable=SC2086 # the settings are VAR=value words
        measure "${builds[i]%%=*}" "${builds[i]#*=}" "$repeat" ${build_env[i]}
    done
done

# --- the report -----------------------------------------------------------------------
labels=()
for build in "${builds[@]}"; do labels+=("${build%%=*}"); done
command="make bench-instructions BENCH_REQUESTS=$REQUESTS BENCH_REPEATS=$REPEATS"
[ "$CONCURRENCY" = 32 ] || command="$command BENCH_CONCURRENCY=$CONCURRENCY"
[ -z "${BENCH_SCENARIOS:-}" ] || command="$command BENCH_SCENARIOS=$SCENARIOS"
[ -z "${BENCH_BASE_BIN:-}" ] || command="$command BENCH_BASE_BIN=$BENCH_BASE_BIN BENCH_BASE_LABEL='${labels[0]}'"
[ -z "${BENCH_SERVER_BIN:-}" ] || command="$command BENCH_SERVER_BIN=$BENCH_SERVER_BIN"
[ -z "${BENCH_SERVER_LABEL:-}" ] || command="$command BENCH_SERVER_LABEL='${labels[-1]}'"
[ -z "${BENCH_BASE_ENV:-}" ] || command="$command BENCH_BASE_ENV='$BENCH_BASE_ENV'"
[ -z "${BENCH_SERVER_ENV:-}" ] || command="$command BENCH_SERVER_ENV='$BENCH_SERVER_ENV'"
pg_version=$(psql_admin -c "SHOW server_version" | cut -d' ' -f1)
{
    echo
    title=${labels[0]}
    for label in "${labels[@]:1}"; do title="$title vs $label"; done
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') · instructions per request (callgrind) · $title"
    echo
    for i in "${!builds[@]}"; do
        echo "- Build \`${builds[i]%%=*}\`: \`${builds[i]#*=}\`${build_env[i]:+ with \`${build_env[i]}\`}"
    done
    echo "- Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end (counts do not depend on it); PostgreSQL $pg_version on the same machine"
    echo "- Parameters: rows $ROWS, $REQUESTS requests per scenario after $WARMUP_REQUESTS of warm-up, $CONCURRENCY in flight over $CONNECTIONS HTTP/2 connections (customer-bench, gRPC, authentication on), $REPEATS runs per build in alternating order, a fresh database copy per run; server without NATS_URL, HEALTH_PROBE_INTERVAL=1h"
    echo "- Command: \`$command\`"
    echo
    awk -F'\t' -v tolerance="$TOLERANCE" -f scripts/bench/instructions-table.awk "$RESULTS"
} >"$OUT/instructions.md"
cat "$OUT/instructions.md"
if [ -n "$MARKDOWN" ]; then
    cat "$OUT/instructions.md" >>"$MARKDOWN"
    log "appended the table to $MARKDOWN (raw counts: target/bench/instructions.tsv, dumps: target/bench/callgrind/)"
fi
