#!/usr/bin/env bash
# prepared-statements.sh: what DB_PREPARED_STATEMENTS=false (the setting for a
# transaction-pooling PgBouncer) costs, measured on the service itself, directly on
# PostgreSQL so only the statement handling differs.
#
# Alternating rounds of the release server with DB_PREPARED_STATEMENTS=true and =false over
# one seeded database of its own (customer_api_psbench_<pid>, dropped at the end), each driven
# by customer-bench (get-grpc, list-first, create). Prints, per scenario and mode, requests
# per second and the server's CPU seconds per 1,000 requests (the figure that holds still on a
# busy machine), one line per round.
#
# Needs: cargo build --release -p customer-api && cargo build --release -p customer-bench
# Settings: PS_ROUNDS (2), BENCH_ROWS (10000), BENCH_DURATION (5 s), BENCH_WARMUP (2 s),
# BENCH_CONCURRENCY (16), BENCH_ADDR (127.0.0.1:18090), BENCH_SCENARIOS.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/target/release/customer-api
BENCH=$ROOT/target/release/customer-bench
for f in "$BIN" "$BENCH"; do
    [ -x "$f" ] || { echo "build first: cargo build --release -p customer-api; cargo build --release -p customer-bench" >&2; exit 1; }
done
ROUNDS=${PS_ROUNDS:-2}
ROWS=${BENCH_ROWS:-10000}
ADDR=${BENCH_ADDR:-127.0.0.1:18090}
SCENARIOS=${BENCH_SCENARIOS:-get-grpc,list-first,create}
OUT=$ROOT/target/bench/prepared-statements
mkdir -p "$OUT"

url="$(scripts/ensure-postgres.sh)" || exit 1
eval "$url"
base=${DATABASE_URL%%\?*}
query=${DATABASE_URL#"$base"}
server_url=${base%/*}
DB=customer_api_psbench_$$
DB_URL="$server_url/$DB$query"
ADMIN_URL="$server_url/postgres$query"

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    psql "$ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DATABASE_URL=$DB_URL "$BIN" migrate 2>"$OUT/migrate.log" || { cat "$OUT/migrate.log" >&2; exit 1; }
psql "$DB_URL" -v ON_ERROR_STOP=1 -q -v rows="$ROWS" -f scripts/bench/seed.sql
export JWT_HS256_SECRET=bench-only-secret-0123456789abcdef0123456789
TOKEN=$("$BIN" token --scopes "customers.read customers.write" --ttl 2h --sub bench 2>/dev/null)

printf '%-8s %-12s %-6s %10s %14s %8s\n' round scenario mode rps "cpu_s/1k_req" errors
for round in $(seq 1 "$ROUNDS"); do
    for mode in true false; do
        env DATABASE_URL="$DB_URL" LISTEN_ADDR="$ADDR" DB_PREPARED_STATEMENTS="$mode" \
            RATE_LIMIT_RPS=1000000 RATE_LIMIT_BURST=1000000 \
            PAGE_TOKEN_KEY="bench page token key 0123456789" \
            "$BIN" serve >"$OUT/server-$mode-$round.log" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 1 100); do
            curl -fsS "http://$ADDR/readyz" >/dev/null 2>&1 && break
            sleep 0.1
        done
        BENCH_TOKEN=$TOKEN "$BENCH" --addr "$ADDR" --rows "$ROWS" --server-pid "$SERVER_PID" \
            --clock-ticks "$(getconf CLK_TCK)" --scenarios "$SCENARIOS" \
            --duration "${BENCH_DURATION:-5}" --warmup "${BENCH_WARMUP:-2}" \
            --concurrency "${BENCH_CONCURRENCY:-16}" --work-dir "$OUT" \
            --json "$OUT/$mode-$round.json" >"$OUT/bench-$mode-$round.log" 2>&1
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" || true
        SERVER_PID=
        python3 - "$OUT/$mode-$round.json" "$round" "$mode" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
for s in report["scenarios"]:
    cpu = s["server_cpu_seconds_per_1k_requests"]
    errors = s["errors"]
    errors = sum(errors.values()) if isinstance(errors, dict) else errors
    print(f'{sys.argv[2]:<8} {s["name"]:<12} {sys.argv[3]:<6} {s["rps"]:>10.0f} '
          f'{(cpu if cpu is not None else float("nan")):>14.3f} {errors:>8}')
EOF
    done
done
