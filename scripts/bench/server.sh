# server.sh: sourced by the benchmark scripts (run.sh, rest-vs-grpc.sh). It provides what
# every measurement runs against: PostgreSQL (scripts/ensure-postgres.sh), a fresh copy of a
# seeded template database (`customer_api_bench`), and the release server on BENCH_ADDR with
# authentication on and rate limits far above the load. It leaves behind ADDR, TOKEN (a
# bearer token with read, write and export scopes), SERVER_PID, BENCH_URL, OUT and ROWS, and a trap
# that stops the server on every exit path.
#
# A script that sets SERVER_START=manual before sourcing gets the database template and the
# token but no server: it calls `start_server [WRAPPER...]` (a fresh copy of the template,
# then $BIN under WRAPPER, e.g. valgrind) and `stop_server` itself, as often as it needs.
#
# Settings (environment): BENCH_ROWS (100000), BENCH_ADDR (127.0.0.1:18080),
# BENCH_SERVER_BIN (another server build, for A/B runs), BENCH_DB_NAME (the database copy,
# default customer_api_bench), BENCH_DB_SSLMODE (the server's
# sslmode to PostgreSQL, default disable), DB_POOL_SIZE and any other server setting.

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
# BENCH_SERVER_BIN runs another build of the server (A/B comparisons of a change).
BIN=${BENCH_SERVER_BIN:-$ROOT/target/release/customer-api}
OUT=$ROOT/target/bench
mkdir -p "$OUT"

ROWS=${BENCH_ROWS:-100000}
ADDR=${BENCH_ADDR:-127.0.0.1:18080}
[[ $ROWS =~ ^[0-9]+$ ]] && [ "$ROWS" -ge 1000 ] || { echo "BENCH_ROWS must be a number >= 1000" >&2; exit 1; }
for tool in psql pgbench; do
    command -v "$tool" >/dev/null || { echo "make bench needs $tool (Debian: apt-get install postgresql-client)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "build first: cargo build --release -p customer-api" >&2; exit 1; }

log() { printf '\033[1mbench:\033[0m %s\n' "$*" >&2; }

url="$(scripts/ensure-postgres.sh)" || exit 1
eval "$url"
# postgres://user@host:port/db?query -> the same server, other databases.
base=${DATABASE_URL%%\?*}
query=${DATABASE_URL#"$base"}
server_url=${base%/*}
db_url() { printf '%s/%s%s' "$server_url" "$1" "$query"; }
ADMIN_URL=$(db_url postgres)
psql_admin() { psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -qAt "$@"; }

# --- the seeded template ------------------------------------------------------------
# The template is named after what it is made of: the schema and the seed script.
migrations_hash=$( (find migrations -type f -print0 | sort -z | xargs -0 sha256sum; sha256sum scripts/bench/seed.sql) | sha256sum | cut -c1-10)
TEMPLATE=customer_api_bench_tpl_${ROWS}_${migrations_hash}
# BENCH_DB_NAME: another name for the copy, so that two sessions on one machine can measure
# at the same time (each with its own BENCH_ADDR) without dropping each other's database.
BENCH_DB=${BENCH_DB_NAME:-customer_api_bench}
exists() { [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$1'")" = 1 ]; }
drop_db() {
    psql_admin -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$1'" >/dev/null
    psql_admin -c "DROP DATABASE IF EXISTS \"$1\"" >/dev/null
}

# Templates of older migrations or seeds are useless now; those of other sizes are kept for reuse.
for stale in $(psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE 'customer\_api\_bench\_tpl\_%' AND datname NOT LIKE '%\_$migrations_hash'"); do
    log "dropping $stale (older migrations or seed)"
    drop_db "$stale"
done

if ! exists "$TEMPLATE"; then
    building=${TEMPLATE}_building
    log "seeding $ROWS customers into $TEMPLATE (once per size and schema)"
    drop_db "$building"
    seed_started=$SECONDS
    DATABASE_URL=$(db_url "$building") "$BIN" migrate 2>"$OUT/migrate.log" || { cat "$OUT/migrate.log" >&2; exit 1; }
    psql "$(db_url "$building")" -v ON_ERROR_STOP=1 -q -v rows="$ROWS" -f scripts/bench/seed.sql
    psql_admin -c "ALTER DATABASE \"$building\" RENAME TO \"$TEMPLATE\""
    log "seeded in $((SECONDS - seed_started)) s"
fi
# fresh_database: $BENCH_DB as a new copy of the template.
fresh_database() {
    drop_db "$BENCH_DB"
    # FILE_COPY copies the files instead of WAL-logging every block (PostgreSQL >= 15).
    if ! psql_admin -c "CREATE DATABASE $BENCH_DB TEMPLATE \"$TEMPLATE\" STRATEGY FILE_COPY" 2>/dev/null; then
        psql_admin -c "CREATE DATABASE $BENCH_DB TEMPLATE \"$TEMPLATE\""
    fi
}
BENCH_URL=$(db_url "$BENCH_DB")
# The server's own connections are plaintext unless BENCH_DB_SSLMODE (or an sslmode in
# DATABASE_URL) says otherwise: with libpq's default `prefer`, a local server with ssl=on
# (Debian's default) would be reached over TLS, whose per-query encryption is then counted in
# every request (~9k instructions per GetCustomer) and is absent from builds before TLS
# support, which makes them incomparable. BENCH_DB_SSLMODE=require measures TLS itself.
case $query in
    *sslmode=*) ;;
    '') BENCH_URL+="?sslmode=${BENCH_DB_SSLMODE:-disable}" ;;
    *) BENCH_URL+="&sslmode=${BENCH_DB_SSLMODE:-disable}" ;;
esac

# --- the server ---------------------------------------------------------------------
export JWT_HS256_SECRET=${JWT_HS256_SECRET:-bench-only-secret-0123456789abcdef0123456789}
TOKEN=$("$BIN" token --scopes "customers.read customers.write customers.export" --ttl 2h --sub bench)
SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# Rate limits stay on (their cost is part of every call) but far above the load.
server_env=(
    DATABASE_URL="$BENCH_URL"
    LISTEN_ADDR="$ADDR"
    RATE_LIMIT_RPS="${RATE_LIMIT_RPS:-1000000}"
    RATE_LIMIT_BURST="${RATE_LIMIT_BURST:-1000000}"
    PAGE_TOKEN_KEY="${PAGE_TOKEN_KEY:-bench page token key 0123456789}"
)
# start_server [WRAPPER...]: $BIN (under WRAPPER, if given) on a fresh copy of the template.
start_server() {
    fresh_database
    log "starting $BIN on $ADDR${*:+ under $*} (log: target/bench/server.log)"
    env "${server_env[@]}" "$@" "$BIN" serve >"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
}
[ "${SERVER_START:-}" = manual ] || start_server

