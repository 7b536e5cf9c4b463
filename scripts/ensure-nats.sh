#!/usr/bin/env bash
# ensure-nats.sh: make sure a NATS server with JetStream answers and print its URL.
#
#   url="$(scripts/ensure-nats.sh)" || exit 1; eval "$url"
#
# STDOUT: exactly one line on success:  export NATS_URL='nats://...'
# STDERR: every human message. On failure: a message and exit 1; stdout is empty.
#
# Order: 1. NATS_URL if set (printed back unchanged); 2. a server on 127.0.0.1:4222;
# 3. a private `nats-server -js` on 127.0.0.1:$NATS_PRIVATE_PORT (default 42229) with its
# store under $NATS_STATE_DIR (default target/nats), reused if running, else started
# (it keeps running after this script exits); 4. no nats-server: exit 1 with install hints.
#
# NATS_SKIP_LOCAL=1 acts as if nothing answered on 127.0.0.1:4222 (to test step 3).

set -euo pipefail
exec 3>&1 1>&2

PROG=ensure-nats
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }
emit() { printf "export NATS_URL='%s'\n" "$1" >&3; }

# A NATS server greets every new connection with `INFO {...}`; JetStream shows in it.
answers() {
  local host=$1 port=$2 greeting
  greeting=$(timeout 2 bash -c "exec 5<>/dev/tcp/$host/$port && IFS= read -r line <&5 && printf '%s' \"\$line\"" 2>/dev/null) || return 1
  [[ $greeting == INFO* ]] || return 1
  if [[ $greeting != *'"jetstream":true'* ]]; then
    log "NATS on $host:$port answers but without JetStream; not using it"
    return 1
  fi
}

if [[ -n ${NATS_URL:-} ]]; then
  emit "$NATS_URL"
  exit 0
fi

if [[ ${NATS_SKIP_LOCAL:-0} != 1 ]] && answers 127.0.0.1 4222; then
  emit "nats://127.0.0.1:4222"
  exit 0
fi

port=${NATS_PRIVATE_PORT:-42229}
state=${NATS_STATE_DIR:-target/nats}
mkdir -p "$state"
state=$(cd "$state" && pwd)
if answers 127.0.0.1 "$port"; then
  emit "nats://127.0.0.1:$port"
  exit 0
fi

server=$(command -v nats-server || true)
for candidate in /usr/sbin/nats-server /usr/local/bin/nats-server "$HOME/go/bin/nats-server"; do
  [[ -z $server && -x $candidate ]] && server=$candidate
done
[[ -n $server ]] || die "no NATS server: set NATS_URL, run one with JetStream on 127.0.0.1:4222, \
or install nats-server (Debian: apt-get install nats-server; or https://github.com/nats-io/nats-server/releases)"

log "starting a private nats-server with JetStream on 127.0.0.1:$port (store: $state)"
nohup "$server" -js -a 127.0.0.1 -p "$port" -sd "$state/store" >"$state/nats.log" 2>&1 3>&- &
# `make stop` (scripts/stop-services.sh) stops the server by this file.
echo $! >"$state/nats.pid"
for _ in $(seq 1 50); do
  if answers 127.0.0.1 "$port"; then
    emit "nats://127.0.0.1:$port"
    exit 0
  fi
  sleep 0.2
done
die "nats-server did not start; see $state/nats.log"
