#!/usr/bin/env bash
# run.sh: the body of `make bench` (the Makefile builds the release binaries first).
#
#  1. PostgreSQL from scripts/ensure-postgres.sh, like `make run`.
#  2. A seeded template database per (BENCH_ROWS, migrations): migrated by the service's own
#     `migrate`, filled by scripts/bench/seed.sql; built once, then every run starts from a
#     fresh copy of it (`customer_api_bench`), so runs are comparable and the seed cost is
#     paid once (about 10 s per 100,000 customers).
#  3. The release server on BENCH_ADDR with authentication on (an HS256 secret and a token
#     minted by `customer-api token`), rate limits far above the load.
#  4. customer-bench: pgbench baselines and every scenario; the report is appended to
#     BENCHMARKS.md and written to target/bench/results.json.
#  5. The server is stopped on every exit path (trap).
#
# Settings (environment): BENCH_ROWS (100000), BENCH_DURATION (10 s measured per scenario),
# BENCH_WARMUP (3 s), BENCH_CONCURRENCY (32), BENCH_CONNECTIONS (4 HTTP/2 connections for
# gRPC), BENCH_THREADS (2 generator threads), BENCH_SCENARIOS (comma list, default all),
# BENCH_ADDR (127.0.0.1:18080), BENCH_NOTE (a line for the report), BENCH_MARKDOWN
# (BENCHMARKS.md; empty to skip), BENCH_SERVER_BIN (another server build, for A/B runs),
# DB_POOL_SIZE and any other server setting.
set -euo pipefail

source "$(dirname "$0")/server.sh"
BENCH=$ROOT/target/release/customer-bench
MARKDOWN=${BENCH_MARKDOWN-$ROOT/BENCHMARKS.md}
[ -x "$BENCH" ] || { echo "build first: cargo build --release -p customer-bench" >&2; exit 1; }

settings="DB_POOL_SIZE=${DB_POOL_SIZE:-default} RATE_LIMIT_RPS=${RATE_LIMIT_RPS:-1000000} MAX_CONCURRENT_REQUESTS=${MAX_CONCURRENT_REQUESTS:-default}"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# BENCHMARKS.md itself (appended by every run) does not make a build dirty.
git diff --quiet HEAD -- . ':!BENCHMARKS.md' 2>/dev/null || commit="$commit (with uncommitted changes)"
pg_version=$(psql_admin -c "SHOW server_version" | cut -d' ' -f1)
command="make bench BENCH_ROWS=$ROWS BENCH_DURATION=${BENCH_DURATION:-10} BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-32}"
[ -z "${BENCH_SCENARIOS:-}" ] || command="$command BENCH_SCENARIOS=$BENCH_SCENARIOS"

args=(
    --addr "$ADDR"
    --rows "$ROWS"
    --server-pid "$SERVER_PID"
    --clock-ticks "$(getconf CLK_TCK)"
    --database-url "$BENCH_URL"
    --work-dir "$OUT"
    --json "$OUT/results.json"
    --commit "$commit"
    --postgres "PostgreSQL $pg_version on the same machine (${server_url#*@})"
    --command "$command"
    --server-settings "$settings"
)
[ -z "$MARKDOWN" ] || args+=(--markdown "$MARKDOWN")
BENCH_TOKEN=$TOKEN "$BENCH" "${args[@]}"
