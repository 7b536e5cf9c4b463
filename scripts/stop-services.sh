#!/usr/bin/env bash
# stop-services.sh: `make stop` — stop the private PostgreSQL cluster and NATS server that
# scripts/ensure-postgres.sh and scripts/ensure-nats.sh started for this checkout (under
# target/pg and target/nats by default). Servers this checkout did not start (DATABASE_URL,
# NATS_URL, the machine's own on the standard ports) are never touched. Their data stays on
# disk; the next `make run` or `make test` starts them again.
set -euo pipefail
PG_STATE_DIR=${PG_STATE_DIR:-target/pg}
NATS_STATE_DIR=${NATS_STATE_DIR:-target/nats}
log() { printf 'stop: %s\n' "$*" >&2; }

data=$PG_STATE_DIR/data
if [ -f "$data/postmaster.pid" ]; then
    version=$(cat "$data/PG_VERSION")
    pg_ctl=/usr/lib/postgresql/$version/bin/pg_ctl
    [ -x "$pg_ctl" ] || pg_ctl=$(command -v pg_ctl)
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$pg_ctl" -D "$(realpath "$data")" -m fast -w stop >&2
    else
        "$pg_ctl" -D "$data" -m fast -w stop >&2
    fi
    log "PostgreSQL ($data) stopped"
else
    log "no private PostgreSQL running under $data"
fi

pidfile=$NATS_STATE_DIR/nats.pid
pid=$(cat "$pidfile" 2>/dev/null || true)
# Only a nats-server process of ours: a stale file may name a recycled pid.
if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nats-server ]; then
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    log "NATS ($NATS_STATE_DIR) stopped"
else
    log "no private NATS server running under $NATS_STATE_DIR"
fi
rm -f "$pidfile"
