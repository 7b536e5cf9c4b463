#!/usr/bin/env bash
# rest-vs-grpc.sh: the body of `make bench-rest`, issue 3's cross-check of the gateway's cost
# with load generators that are not ours: GetCustomer over gRPC (h2load) against
# `GET /v1/customers/{id}` over REST, both against the same release server (authentication
# on) in alternating rounds, so that a slow minute of a shared machine hurts both sides.
#
# Per round, in alternating order:
#   grpc      h2load -c4 -m8  POST /customer.v1.CustomerService/GetCustomer (HTTP/2)
#   rest-h1   wrk -t2 -c32    GET /v1/customers/{id}                       (HTTP/1.1)
#   rest-h2   h2load -c4 -m8  GET /v1/customers/{id}                       (HTTP/2)
# Each line gives requests per second, the server's CPU per request (user + system from
# /proc, so the client's own cost is left out), and REST's throughput over gRPC's in the
# same round. Every response is checked first (grpc-status 0, HTTP 200 with the customer).
# Many short rounds rather than a few long ones: on a shared machine the cost of the same
# request drifts by a third from one ten-second window to the next, and short alternating
# windows spread that drift over both sides. The summary gives the ratio of the totals
# (all REST requests over all gRPC requests, the figure to quote) and the median, lowest and
# highest per-round ratio.
#
# BENCH_INSTRUCTIONS=1 measures instead what does not drift: the server runs under valgrind's
# callgrind and each shape sends BENCH_REQUESTS (2,000) requests after 300 of warm-up; the
# instructions the server executed per request are exact and repeatable, whatever else the
# machine is doing (h2load --h1 stands in for wrk there: same requests, a fixed count).
#
# Settings (environment): BENCH_ROUNDS (12), BENCH_DURATION (5 s per measurement),
# BENCH_WARMUP (3 s per load shape, once), BENCH_INSTRUCTIONS, BENCH_REQUESTS, and those of
# server.sh.
set -euo pipefail

tools="wrk h2load curl bc"
[ "${BENCH_INSTRUCTIONS:-0}" = 0 ] || tools="$tools valgrind callgrind_control"
for tool in $tools; do
    command -v "$tool" >/dev/null || {
        echo "make bench-rest needs $tool (Debian: apt-get install wrk nghttp2-client curl bc valgrind)" >&2
        exit 1
    }
done
source "$(dirname "$0")/server.sh"

ROUNDS=${BENCH_ROUNDS:-12}
DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-3}
URL=http://$ADDR
# Customer 501 of the seed (scripts/bench/seed.sql numbers the ids).
ID=00000000-0000-7000-8000-0000000001f5
NAME=customers/$ID
GRPC_METHOD=$URL/customer.v1.CustomerService/GetCustomer
AUTH="authorization: Bearer $TOKEN"

# GetCustomerRequest{name} as one gRPC frame: flag 0, 32-bit length, then field 1.
REQUEST=$OUT/get-customer.grpc
message_length=$((${#NAME} + 2))
printf "\\x00\\x00\\x00\\x00\\x$(printf %02x $message_length)\\x0a\\x$(printf %02x ${#NAME})%s" "$NAME" >"$REQUEST"

if [ "${BENCH_INSTRUCTIONS:-0}" != 0 ]; then
    # The same server, under callgrind (about 50 times slower, so counts, not timings).
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    rm -f "$OUT"/callgrind.out.*
    log "restarting the server under callgrind (log: target/bench/server.log)"
    env "${server_env[@]}" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" \
        "$BIN" serve >"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
fi
for _ in $(seq 1 300); do
    curl -fs "$URL/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.2
done

# Both sides must answer the customer before their throughput means anything.
grpc_headers=$(curl -s --http2-prior-knowledge -D - -o "$OUT/get-customer.grpc-response" \
    -H 'content-type: application/grpc' -H 'te: trailers' -H "$AUTH" \
    --data-binary @"$REQUEST" "$GRPC_METHOD")
grep -q '^grpc-status: 0' <<<"$grpc_headers" || { echo "gRPC GetCustomer failed:" >&2; echo "$grpc_headers" >&2; exit 1; }
grep -q "$ID" "$OUT/get-customer.grpc-response" || { echo "gRPC GetCustomer answered another customer" >&2; exit 1; }
rest_body=$(curl -fsS -H "$AUTH" "$URL/v1/customers/$ID")
grep -q "\"name\":\"$NAME\"" <<<"$rest_body" || { echo "REST GET failed: $rest_body" >&2; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
TICKS=$(getconf CLK_TCK)

# measure LABEL SECONDS: runs one load shape; prints "rps cpu_us_per_request".
measure() {
    local label=$1 seconds=$2 out before after requests rps bad
    before=$(cpu_ticks)
    case $label in
    grpc)
        out=$(h2load -D "$seconds" -c 4 -m 8 -t 1 -d "$REQUEST" \
            -H 'content-type: application/grpc' -H 'te: trailers' -H "$AUTH" "$GRPC_METHOD")
        ;;
    rest-h1)
        out=$(wrk -t 2 -c 32 -d "${seconds}s" -H "$AUTH" "$URL/v1/customers/$ID")
        ;;
    rest-h2)
        out=$(h2load -D "$seconds" -c 4 -m 8 -t 1 -H "$AUTH" "$URL/v1/customers/$ID")
        ;;
    esac
    after=$(cpu_ticks)
    if [ "$label" = rest-h1 ]; then
        requests=$(awk '/requests in/ {print $1}' <<<"$out")
        rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
        bad=$(grep -c 'Non-2xx\|Socket errors' <<<"$out" || true)
    else
        requests=$(awk '/^requests:/ {print $8}' <<<"$out")
        rps=$(awk '/^finished in/ {print $4}' <<<"$out")
        # "status codes: N 2xx, N 3xx, N 4xx, N 5xx" and "requests: … N failed, N errored …"
        bad=$(awk '/^status codes:/ {b += $5 + $7 + $9} /^requests:/ {b += $10 + $12} END {print b}' <<<"$out")
    fi
    if [ "${bad:-0}" != 0 ] || [ -z "$requests" ] || [ "$requests" = 0 ]; then
        echo "$label: failed requests" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "$rps $(bc -l <<<"($after - $before) * 1000000 / $TICKS / $requests")"
}

if [ "${BENCH_INSTRUCTIONS:-0}" != 0 ]; then
    REQUESTS=${BENCH_REQUESTS:-2000}
    # count SHAPE N: N requests of one shape (a fixed number, not a time).
    count() {
        local out
        case $1 in
        grpc) out=$(h2load -n "$2" -c 4 -m 8 -t 1 -d "$REQUEST" \
            -H 'content-type: application/grpc' -H 'te: trailers' -H "$AUTH" "$GRPC_METHOD") ;;
        rest-h1) out=$(h2load --h1 -n "$2" -c 4 -t 1 -H "$AUTH" "$URL/v1/customers/$ID") ;;
        rest-h2) out=$(h2load -n "$2" -c 4 -m 8 -t 1 -H "$AUTH" "$URL/v1/customers/$ID") ;;
        esac
        grep -q "^status codes: $2 2xx" <<<"$out" || { echo "$1: failed requests" >&2; echo "$out" >&2; exit 1; }
    }
    log "$REQUESTS requests per shape under callgrind"
    printf '%-8s %18s %10s\n' shape "instructions/req" "vs gRPC"
    declare -A per_request
    for shape in grpc rest-h1 rest-h2; do
        count "$shape" 300
        callgrind_control --zero "$SERVER_PID" >/dev/null 2>&1
        count "$shape" "$REQUESTS"
        callgrind_control --dump="$shape" "$SERVER_PID" >/dev/null 2>&1
        dump=$(grep -l "^desc: Trigger: dump $shape\$" "$OUT"/callgrind.out.* | head -1)
        total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
        per_request[$shape]=$((total / REQUESTS))
        printf '%-8s %18d %10.3f\n' "$shape" "${per_request[$shape]}" \
            "$(bc -l <<<"${per_request[$shape]} / ${per_request[grpc]}")"
    done
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    exit 0
fi

log "warming up ($WARMUP s per load shape)"
for label in grpc rest-h1 rest-h2; do measure "$label" "$WARMUP" >/dev/null; done

log "$ROUNDS rounds of $DURATION s per load shape, alternating order"
printf '%-5s %-8s %10s %14s %12s\n' round shape rps "cpu µs/req" "REST/gRPC"
declare -A total_rps ratios cpus
for shape in grpc rest-h1 rest-h2; do total_rps[$shape]=0; ratios[$shape]=; cpus[$shape]=; done
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="grpc rest-h1 rest-h2"; else order="rest-h2 rest-h1 grpc"; fi
    declare -A rps=() cpu=()
    for shape in $order; do
        read -r rps[$shape] cpu[$shape] < <(measure "$shape" "$DURATION")
    done
    for shape in grpc rest-h1 rest-h2; do
        ratio=$(bc -l <<<"${rps[$shape]} / ${rps[grpc]}")
        total_rps[$shape]=$(bc -l <<<"${total_rps[$shape]} + ${rps[$shape]}")
        ratios[$shape]+="$ratio "
        cpus[$shape]+="${cpu[$shape]} "
        printf '%-5s %-8s %10.0f %14.1f %12.3f\n' "$round" "$shape" "${rps[$shape]}" "${cpu[$shape]}" "$ratio"
    done
done

# median / min / max of a list of numbers
stats() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f %.3f %.3f\n", m, v[1], v[NR]}'; }

echo
echo "summary over $ROUNDS rounds of $DURATION s (target: REST >= 0.85 of gRPC)"
printf '%-8s %14s %16s %10s %10s %18s\n' shape "total ratio" "median ratio" min max "median cpu µs/req"
for shape in rest-h1 rest-h2 grpc; do
    read -r median low high < <(stats "${ratios[$shape]}")
    read -r cpu_median _ _ < <(stats "${cpus[$shape]}")
    printf '%-8s %14.3f %16s %10s %10s %18.1f\n' "$shape" \
        "$(bc -l <<<"${total_rps[$shape]} / ${total_rps[grpc]}")" "$median" "$low" "$high" "$cpu_median"
done
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
