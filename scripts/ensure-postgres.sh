#!/usr/bin/env bash
# ensure-postgres.sh: make sure a PostgreSQL server answers and print its URL.
#
# Makefile use (the recipe shell sees the variable):
#
#   test:
#   	eval "$$(scripts/ensure-postgres.sh)" && cargo test
#
# Note: `eval "$(...)"` on its own returns 0 even when this script fails,
# because eval of an empty string succeeds. Chain with `&&`, or do
#   url="$$(scripts/ensure-postgres.sh)" || exit 1; eval "$$url"; ...
#
# STDOUT: exactly one line on success:  export DATABASE_URL='postgres://...'
# STDERR: every human message. On failure: a message and exit 1; stdout is empty.
#
# Inputs (environment):
#   DATABASE_URL     if non-empty: printed back unchanged, nothing is checked.
#   PG_DATABASE      database name in the URL (default: customer_api). This
#                    script does NOT create it (the service's `migrate` does).
#   PG_STATE_DIR     where the private cluster lives (default: target/pg,
#                    relative to the current directory; made absolute).
#   PG_PRIVATE_PORT  port of the private cluster (default: 54329).
#   PG_SKIP_LOCAL=1  act as if nothing answered on 127.0.0.1:5432 (testing).
#   PGUSER/PGPASSWORD  put into the URL for the 127.0.0.1:5432 server.
#   PG_BIN_DIRS      colon-separated directories holding initdb/pg_ctl/postgres;
#                    when set, ONLY these are searched (testing/override).
#   PG_LOCK_TIMEOUT  seconds to wait for another run's initdb/start (default 180).
#
# Order: 1. DATABASE_URL; 2. a server on 127.0.0.1:5432; 3. a private cluster
# in $PG_STATE_DIR/data on 127.0.0.1:$PG_PRIVATE_PORT (reused if running, else
# created with initdb and started; it keeps running after this script exits);
# 4. no binaries: exit 1 with install hints.

set -euo pipefail

# Everything this script and its children write to stdout goes to stderr; the
# real stdout is kept on fd 3 for the single result line. Fds 3 and 9 (lock)
# are closed for every child we start, so a daemonized postmaster cannot keep
# `$(...)` waiting or keep the lock held.
exec 3>&1 1>&2

PROG=ensure-postgres
LOCAL_HOST=127.0.0.1
LOCAL_PORT=5432

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

# Single-quote a string for sh/bash: abc'd -> 'abc'\''d'
sq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

emit_url() {
    printf 'export DATABASE_URL=%s\n' "$(sq "$1")" >&3
    exit 0
}

# Percent-encode everything but RFC 3986 unreserved characters (byte-wise).
urlencode() {
    local LC_ALL=C s=$1 out='' c i n
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [a-zA-Z0-9.~_-]) out+=$c ;;
            *)
                n=$(printf '%d' "'$c")
                ((n < 0)) && n=$((n + 256))
                out+=$(printf '%%%02X' "$n")
                ;;
        esac
    done
    printf '%s' "$out"
}

# ---------------------------------------------------------------------------
# 1. DATABASE_URL given: hand it back unchanged.
if [ -n "${DATABASE_URL:-}" ]; then
    emit_url "$DATABASE_URL"
fi

PG_DATABASE=${PG_DATABASE:-customer_api}
PG_PRIVATE_PORT=${PG_PRIVATE_PORT:-54329}
PG_STATE_DIR=${PG_STATE_DIR:-target/pg}
PG_LOCK_TIMEOUT=${PG_LOCK_TIMEOUT:-180}

case $PG_PRIVATE_PORT in
    '' | *[!0-9]*) die "PG_PRIVATE_PORT must be a port number, got '$PG_PRIVATE_PORT'" ;;
esac
((PG_PRIVATE_PORT >= 1 && PG_PRIVATE_PORT <= 65535)) ||
    die "PG_PRIVATE_PORT out of range: $PG_PRIVATE_PORT"
case $PG_LOCK_TIMEOUT in
    '' | *[!0-9]*) die "PG_LOCK_TIMEOUT must be a number of seconds" ;;
esac
[ -n "$PG_DATABASE" ] || die "PG_DATABASE is empty"

case $PG_STATE_DIR in
    /*) ;;
    *) PG_STATE_DIR=$PWD/${PG_STATE_DIR#./} ;;
esac
# Tidy the path (no trailing slash, no /./); keep it if realpath is missing.
if command -v realpath >/dev/null 2>&1; then
    PG_STATE_DIR=$(realpath -m -- "$PG_STATE_DIR" 2>/dev/null || printf '%s' "$PG_STATE_DIR")
fi
while [ "${PG_STATE_DIR%/}" != "$PG_STATE_DIR" ] && [ "$PG_STATE_DIR" != / ]; do
    PG_STATE_DIR=${PG_STATE_DIR%/}
done
DATA_DIR=$PG_STATE_DIR/data
SOCK_DIR=$PG_STATE_DIR/sock
LOG_FILE=$PG_STATE_DIR/postgres.log
LOCK_FILE=$PG_STATE_DIR/.ensure-postgres.lock

DB_ENC=$(urlencode "$PG_DATABASE")
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# ---------------------------------------------------------------------------
# Locating binaries.

# Candidate directories, most preferred first, one per line.
candidate_bin_dirs() {
    local d p real ver
    if [ -n "${PG_BIN_DIRS:-}" ]; then
        local IFS=:
        for d in $PG_BIN_DIRS; do [ -n "$d" ] && printf '%s\n' "$d"; done
        return 0
    fi
    if p=$(command -v initdb 2>/dev/null) && [ -n "$p" ]; then
        real=$(readlink -f -- "$p" 2>/dev/null || printf '%s' "$p")
        printf '%s\n' "${real%/*}" "${p%/*}"
    fi
    # /usr/lib/postgresql/<ver>/bin, highest version first (handles 9.6 < 10).
    for d in /usr/lib/postgresql/*/bin; do
        [ -d "$d" ] || continue
        ver=${d#/usr/lib/postgresql/}
        ver=${ver%/bin}
        printf '%s %s\n' "$ver" "$d"
    done | sort -t. -k1,1nr -k2,2nr | cut -d' ' -f2-
    printf '%s\n' /usr/local/pgsql/bin
}

has_server_bins() {
    [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]
}

# Major version of the binaries in dir $1: "15", "9.6", ...
bin_major() {
    local v
    v=$("$1/pg_ctl" --version 2>/dev/null 3>&- 9>&- | sed -n 's/.*[^0-9.]\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1.\2/p' | head -n1) || true
    case $v in
        '') return 1 ;;
        [1-9][0-9].* | [1-9][0-9][0-9].*) printf '%s' "${v%%.*}" ;;
        *) printf '%s' "$v" ;;
    esac
}

# Sets PG_BIN (or leaves it empty). If the data dir already exists, prefer the
# binaries whose major version matches it.
PG_BIN=
find_server_bins() {
    local want='' d first='' seen=':' m
    [ -f "$DATA_DIR/PG_VERSION" ] && want=$(tr -d ' \n\r' <"$DATA_DIR/PG_VERSION")
    while IFS= read -r d; do
        [ -n "$d" ] || continue
        case $seen in *":$d:"*) continue ;; esac
        seen="$seen$d:"
        has_server_bins "$d" || continue
        [ -n "$first" ] || first=$d
        if [ -z "$want" ]; then PG_BIN=$d; return 0; fi
        m=$(bin_major "$d") || continue
        if [ "$m" = "$want" ]; then PG_BIN=$d; return 0; fi
    done < <(candidate_bin_dirs)
    if [ -n "$want" ] && [ -n "$first" ]; then
        die "$DATA_DIR was created by PostgreSQL $want, but the binaries found" \
            "($first) are version $(bin_major "$first" || echo '?')." \
            "Install PostgreSQL $want, or delete $PG_STATE_DIR to recreate the cluster."
    fi
    return 0
}

# pg_isready: PATH first, then next to the server binaries.
PG_ISREADY=
find_pg_isready() {
    local d
    if PG_ISREADY=$(command -v pg_isready 2>/dev/null) && [ -n "$PG_ISREADY" ]; then return 0; fi
    PG_ISREADY=
    if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/pg_isready" ]; then PG_ISREADY=$PG_BIN/pg_isready; return 0; fi
    while IFS= read -r d; do
        if [ -x "$d/pg_isready" ]; then PG_ISREADY=$d/pg_isready; return 0; fi
    done < <(candidate_bin_dirs)
    return 0
}

# port_answers HOST PORT [USER]: 0 if a PostgreSQL server accepts connections
# (pg_isready), or, without pg_isready, if the TCP port is open.
port_answers() {
    local host=$1 port=$2 user=${3:-postgres}
    if [ -n "$PG_ISREADY" ]; then
        "$PG_ISREADY" -q -h "$host" -p "$port" -t 2 -U "$user" -d postgres \
            </dev/null >/dev/null 2>&1 3>&- 9>&-
        return
    fi
    # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
    if command -v timeout >/dev/null 2>&1; then
        timeout 2 "${BASH:-bash}" -c 'exec 5<>"/dev/tcp/$1/$2"' _ "$host" "$port" \
            </dev/null >/dev/null 2>&1 3>&- 9>&-
    else
        "${BASH:-bash}" -c 'exec 5<>"/dev/tcp/$1/$2"' _ "$host" "$port" \
            </dev/null >/dev/null 2>&1 3>&- 9>&-
    fi
}

# ---------------------------------------------------------------------------
# 2. A server on 127.0.0.1:5432?
find_pg_isready

if [ "${PG_SKIP_LOCAL:-}" = 1 ]; then
    log "PG_SKIP_LOCAL=1: not using $LOCAL_HOST:$LOCAL_PORT"
elif port_answers "$LOCAL_HOST" "$LOCAL_PORT" "${PGUSER:-postgres}"; then
    userinfo=$(urlencode "${PGUSER:-postgres}")
    if [ -n "${PGPASSWORD:-}" ]; then
        userinfo="$userinfo:$(urlencode "$PGPASSWORD")"
    fi
    log "using the PostgreSQL server on $LOCAL_HOST:$LOCAL_PORT (user ${PGUSER:-postgres})"
    emit_url "postgres://$userinfo@$LOCAL_HOST:$LOCAL_PORT/$DB_ENC"
fi

# ---------------------------------------------------------------------------
# 3. Private cluster.

PRIVATE_URL="postgres://postgres@$LOCAL_HOST:$PG_PRIVATE_PORT/$DB_ENC"
find_server_bins
[ -n "$PG_ISREADY" ] || find_pg_isready

no_binaries() {
    local where="on PATH, in /usr/lib/postgresql/*/bin or in /usr/local/pgsql/bin"
    [ -z "${PG_BIN_DIRS:-}" ] || where="in PG_BIN_DIRS=$PG_BIN_DIRS"
    printf '%s\n' \
        "$PROG: ERROR: nothing answers on $LOCAL_HOST:$LOCAL_PORT and no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found $where." \
        "  Install PostgreSQL (the private cluster is then created automatically):" \
        "    Debian/Ubuntu: sudo apt-get install postgresql" \
        "    Fedora/RHEL:   sudo dnf install postgresql-server" \
        "    macOS:         brew install postgresql" \
        "  or point the build at an existing server:" \
        "    export DATABASE_URL='postgres://USER:PASSWORD@HOST:5432/$PG_DATABASE'" >&2
    exit 1
}

# Run a PostgreSQL binary as the user that owns the cluster (postgres when we
# are root: initdb, pg_ctl and postgres refuse to run as root).
run_pg() {
    if [ "$IS_ROOT" -eq 0 ]; then
        "$@" </dev/null 3>&- 9>&-
        return
    fi
    if command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u postgres -- "$@") </dev/null 3>&- 9>&-
        return
    fi
    local cmd='' a
    for a in "$@"; do cmd="$cmd $(sq "$a")"; done
    (cd / && su postgres -s /bin/sh -c "exec$cmd") </dev/null 3>&- 9>&-
}

stop_hint() {
    if [ "$IS_ROOT" -eq 1 ]; then
        log "to stop it: make stop, or runuser -u postgres -- $(sq "$PG_BIN/pg_ctl") -D $(sq "$DATA_DIR") stop"
    else
        log "to stop it: make stop, or $(sq "$PG_BIN/pg_ctl") -D $(sq "$DATA_DIR") stop"
    fi
}

ensure_pg_user() {
    [ "$IS_ROOT" -eq 1 ] || return 0
    if id -u postgres >/dev/null 2>&1; then return 0; fi
    log "running as root and no 'postgres' OS user exists; creating it (system user, no home)"
    if command -v useradd >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /bin/sh postgres 3>&- 9>&- ||
            die "useradd failed; create a 'postgres' user yourself (useradd --system postgres) or run as a non-root user"
    elif command -v adduser >/dev/null 2>&1; then
        adduser -S -D -H -s /bin/sh postgres 3>&- 9>&- ||
            die "adduser failed; create a 'postgres' user yourself or run as a non-root user"
    else
        die "initdb/postgres cannot run as root and there is no 'postgres' user; create one" \
            "(useradd --system --no-create-home postgres) or run make as a non-root user"
    fi
    id -u postgres >/dev/null 2>&1 || die "could not create the 'postgres' OS user"
}

# As root, the postgres user must be able to reach the state dir: every parent
# needs the x bit for it. Report the first one that is not traversable.
check_traversable() {
    [ "$IS_ROOT" -eq 1 ] || return 0
    if run_pg test -w "$PG_STATE_DIR" -a -x "$PG_STATE_DIR" 2>/dev/null; then return 0; fi
    local d=$PG_STATE_DIR bad=''
    while [ -n "$d" ] && [ "$d" != / ]; do
        d=${d%/*}
        [ -n "$d" ] || d=/
        if ! run_pg test -x "$d" 2>/dev/null; then bad="$d${bad:+ $bad}"; fi
    done
    die "the 'postgres' OS user cannot reach $PG_STATE_DIR" \
        "${bad:+(not traversable for it: $bad)}." \
        "Fix with: chmod o+x ${bad:-<each parent directory>}  -- or set PG_STATE_DIR to a path" \
        "under a world-traversable directory, e.g. PG_STATE_DIR=/var/tmp/pg-\$USER"
}

# Is the cluster in $DATA_DIR running? Sets RUNNING_PORT from postmaster.pid.
RUNNING_PORT=
cluster_running() {
    RUNNING_PORT=
    [ -f "$DATA_DIR/postmaster.pid" ] || return 1
    local rc=0
    if [ -n "$PG_BIN" ]; then
        run_pg "$PG_BIN/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1 || rc=$?
    else
        local pid
        pid=$(head -n1 "$DATA_DIR/postmaster.pid" 2>/dev/null) || rc=1
        case $pid in '' | *[!0-9]*) rc=1 ;; esac
        [ "$rc" -ne 0 ] || kill -0 "$pid" 2>/dev/null || rc=1
    fi
    [ "$rc" -eq 0 ] || return 1
    RUNNING_PORT=$(sed -n '4p' "$DATA_DIR/postmaster.pid" 2>/dev/null | tr -d ' \r') || true
    case $RUNNING_PORT in '' | *[!0-9]*) RUNNING_PORT=$PG_PRIVATE_PORT ;; esac
    return 0
}

wait_ready() { # PORT SECONDS
    local i=0
    while ! port_answers "$LOCAL_HOST" "$1" postgres; do
        i=$((i + 1))
        [ "$i" -lt "$2" ] || return 1
        sleep 1
    done
}

show_log_tail() {
    if [ -f "$LOG_FILE" ]; then
        log "last lines of $LOG_FILE:"
        tail -n 20 "$LOG_FILE" >&2 || true
    fi
}

# --- lock: one initdb/start at a time per state dir ------------------------
mkdir -p -- "$PG_STATE_DIR" || die "cannot create $PG_STATE_DIR"
LOCK_DIR=
# shellcheck disable=SC2317 # called by the EXIT trap
release_mkdir_lock() { [ -z "$LOCK_DIR" ] || rm -rf -- "$LOCK_DIR"; }
if command -v flock >/dev/null 2>&1; then
    exec 9>>"$LOCK_FILE" || die "cannot open lock file $LOCK_FILE"
    if ! flock -n 9; then
        log "another run is setting up the cluster in $PG_STATE_DIR; waiting (up to ${PG_LOCK_TIMEOUT}s)"
        flock -w "$PG_LOCK_TIMEOUT" 9 || die "timed out waiting for lock $LOCK_FILE"
    fi
else
    # Fallback without flock: atomic mkdir, stealing it from a dead holder.
    waited=0
    until mkdir -- "$LOCK_FILE.d" 2>/dev/null; do
        holder=$(cat "$LOCK_FILE.d/pid" 2>/dev/null || true)
        if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then
            log "removing stale lock of dead process $holder"
            rm -rf -- "$LOCK_FILE.d"
            continue
        fi
        [ "$waited" -eq 0 ] && log "another run is setting up the cluster; waiting (up to ${PG_LOCK_TIMEOUT}s)"
        waited=$((waited + 1))
        [ "$waited" -le "$PG_LOCK_TIMEOUT" ] || die "timed out waiting for lock $LOCK_FILE.d"
        sleep 1
    done
    LOCK_DIR=$LOCK_FILE.d
    echo $$ >"$LOCK_DIR/pid"
    trap release_mkdir_lock EXIT
fi

# --- already running? --------------------------------------------------------
if cluster_running; then
    if [ "$RUNNING_PORT" != "$PG_PRIVATE_PORT" ]; then
        log "WARNING: the cluster in $DATA_DIR is running on port $RUNNING_PORT," \
            "not PG_PRIVATE_PORT=$PG_PRIVATE_PORT; using port $RUNNING_PORT (stop it to change the port)"
        PRIVATE_URL="postgres://postgres@$LOCAL_HOST:$RUNNING_PORT/$DB_ENC"
    fi
    # Usually ready at once; give a starting/recovering server some time, and
    # fall through to a fresh start if it turns out to be gone (crash, kill -9).
    for _ in $(seq 1 30); do
        if port_answers "$LOCAL_HOST" "$RUNNING_PORT" postgres; then
            log "reusing the private cluster in $DATA_DIR on $LOCAL_HOST:$RUNNING_PORT"
            [ -z "$PG_BIN" ] || stop_hint
            emit_url "$PRIVATE_URL"
        fi
        cluster_running || break
        sleep 1
    done
    if cluster_running; then
        show_log_tail
        die "the cluster in $DATA_DIR is running but does not accept connections on" \
            "$LOCAL_HOST:$RUNNING_PORT after 30s; see $LOG_FILE"
    fi
    log "the cluster in $DATA_DIR has stopped meanwhile; starting it again"
    PRIVATE_URL="postgres://postgres@$LOCAL_HOST:$PG_PRIVATE_PORT/$DB_ENC"
fi

if port_answers "$LOCAL_HOST" "$PG_PRIVATE_PORT" postgres; then
    if [ -n "$PG_ISREADY" ]; then
        log "WARNING: a PostgreSQL server that is not $DATA_DIR already answers on" \
            "$LOCAL_HOST:$PG_PRIVATE_PORT; reusing it (set PG_PRIVATE_PORT to use a cluster of your own)"
        emit_url "$PRIVATE_URL"
    fi
    die "port $PG_PRIVATE_PORT on $LOCAL_HOST is in use by something else; set PG_PRIVATE_PORT to a free port"
fi

# --- 4. nothing to start it with -----------------------------------------------
[ -n "$PG_BIN" ] || no_binaries
log "using PostgreSQL binaries in $PG_BIN"

# --- initdb (into a temporary dir, renamed when complete) -----------------------
ensure_pg_user
mkdir -p -- "$SOCK_DIR"
rm -rf -- "$PG_STATE_DIR"/data.initdb.* 2>/dev/null || true # leftovers of a killed run

if [ -e "$DATA_DIR" ] && [ ! -f "$DATA_DIR/PG_VERSION" ]; then
    die "$DATA_DIR exists but is not a PostgreSQL data directory (no PG_VERSION);" \
        "remove it (rm -rf $(sq "$DATA_DIR")) and re-run"
fi

if [ "$IS_ROOT" -eq 1 ]; then
    chown -R postgres -- "$PG_STATE_DIR" || die "chown -R postgres $PG_STATE_DIR failed"
    check_traversable
fi

if [ ! -e "$DATA_DIR" ]; then
    tmp_data=$PG_STATE_DIR/data.initdb.$$
    log "creating a private cluster in $DATA_DIR (initdb)"
    initdb_args=(-D "$tmp_data" -U postgres --auth=trust -E UTF8 --locale=C)
    if "$PG_BIN/initdb" --help 2>/dev/null 3>&- 9>&- | grep -q -- '--no-sync'; then
        initdb_args+=(--no-sync) # dev/test cluster, like fsync=off below
    fi
    if ! run_pg "$PG_BIN/initdb" "${initdb_args[@]}" >"$PG_STATE_DIR/initdb.log" 2>&1; then
        log "initdb failed; output:"
        cat "$PG_STATE_DIR/initdb.log" >&2 || true
        rm -rf -- "$tmp_data"
        exit 1
    fi
    mv -- "$tmp_data" "$DATA_DIR" || die "could not move $tmp_data to $DATA_DIR"
fi

# --- start -------------------------------------------------------------------------
# pg_ctl passes -o through /bin/sh, so paths inside it are shell-quoted.
sock_opt="-k $(sq "$SOCK_DIR")"
if [ $((${#SOCK_DIR} + 18)) -ge 107 ]; then
    log "NOTE: $SOCK_DIR is too long for a Unix socket path; TCP only"
    sock_opt="-c unix_socket_directories=''"
fi
log "starting the private cluster on $LOCAL_HOST:$PG_PRIVATE_PORT (log: $LOG_FILE)"
if ! run_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -t 60 \
    -o "-p $PG_PRIVATE_PORT $sock_opt -c listen_addresses=$LOCAL_HOST -c fsync=off -c max_connections=300" \
    -w start >/dev/null 2>"$PG_STATE_DIR/pg_ctl.err"; then
    cat "$PG_STATE_DIR/pg_ctl.err" >&2 || true
    show_log_tail
    die "could not start the private cluster in $DATA_DIR"
fi
if ! wait_ready "$PG_PRIVATE_PORT" 30; then
    show_log_tail
    die "the private cluster started but does not answer on $LOCAL_HOST:$PG_PRIVATE_PORT"
fi
log "private cluster is up on $LOCAL_HOST:$PG_PRIVATE_PORT; it keeps running after make exits"
stop_hint
emit_url "$PRIVATE_URL"
