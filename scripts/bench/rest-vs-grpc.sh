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
#
# Settings (environment): BENCH_ROUNDS (6), BENCH_DURATION (10 s per measurement),
# BENCH_WARMUP (3 s per load shape, once), and those of server.sh.
set -euo pipefail

for tool in wrk h2load curl bc; do
    command -v "$tool" >/dev/null || {
        echo "make bench-rest needs $tool (Debian: apt-get install wrk nghttp2-client curl bc)" >&2
        exit 1
    }
done
source "$(dirname "$0")/server.sh"

ROUNDS=${BENCH_ROUNDS:-6}
DURATION=${BENCH_DURATION:-10}
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

for _ in $(seq 1 100); do
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

log "warming up ($WARMUP s per load shape)"
for label in grpc rest-h1 rest-h2; do measure "$label" "$WARMUP" >/dev/null; done

log "$ROUNDS rounds of $DURATION s per load shape, alternating order"
printf '%-5s %-8s %10s %14s %12s\n' round shape rps "cpu µs/req" "REST/gRPC"
declare -A sum_ratio min_ratio max_ratio sum_cpu
for shape in grpc rest-h1 rest-h2; do sum_ratio[$shape]=0; min_ratio[$shape]=9; max_ratio[$shape]=0; sum_cpu[$shape]=0; done
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="grpc rest-h1 rest-h2"; else order="rest-h2 rest-h1 grpc"; fi
    declare -A rps=() cpu=()
    for shape in $order; do
        read -r rps[$shape] cpu[$shape] < <(measure "$shape" "$DURATION")
    done
    for shape in grpc rest-h1 rest-h2; do
        ratio=$(bc -l <<<"${rps[$shape]} / ${rps[grpc]}")
        sum_ratio[$shape]=$(bc -l <<<"${sum_ratio[$shape]} + $ratio")
        sum_cpu[$shape]=$(bc -l <<<"${sum_cpu[$shape]} + ${cpu[$shape]}")
        (($(bc -l <<<"$ratio < ${min_ratio[$shape]}"))) && min_ratio[$shape]=$ratio
        (($(bc -l <<<"$ratio > ${max_ratio[$shape]}"))) && max_ratio[$shape]=$ratio
        printf '%-5s %-8s %10.0f %14.1f %12.3f\n' "$round" "$shape" "${rps[$shape]}" "${cpu[$shape]}" "$ratio"
    done
done

echo
echo "summary over $ROUNDS rounds (target: REST >= 0.85 of gRPC)"
printf '%-8s %10s %10s %10s %16s\n' shape "mean" "min" "max" "mean cpu µs/req"
for shape in rest-h1 rest-h2 grpc; do
    printf '%-8s %10.3f %10.3f %10.3f %16.1f\n' "$shape" \
        "$(bc -l <<<"${sum_ratio[$shape]} / $ROUNDS")" "${min_ratio[$shape]}" "${max_ratio[$shape]}" \
        "$(bc -l <<<"${sum_cpu[$shape]} / $ROUNDS")"
done
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
