#!/usr/bin/env bash
# Measures the denial-of-service scenarios of issue 16 against one server binary:
#   scripts/measure-dos.sh BINARY [PORT]
# Serves BINARY over a fresh database (dropped afterwards) on 127.0.0.1:PORT, seeds a customer
# with 600 notes of 10,000 characters, then runs `examples/dos.rs`: 600 bodiless HTTP/2
# streams, then 20 unread watches, printing another caller's results and the server's RSS
# (VmRSS / VmHWM from /proc). Needs DATABASE_URL (a server URL) and the example built
# (`cargo build --release --example dos`). Used for the numbers in docs/operations.md.
set -euo pipefail
binary=$1
port=${2:-18099}
root=$(cd "$(dirname "$0")/.." && pwd)
dos="$root/target/release/examples/dos"
addr=127.0.0.1:$port
db="customer_api_dos_$$"
base=${DATABASE_URL%/*}
url="$base/$db"
secret=measure-dos-secret-0123456789abcdefghij
server=
attack=
cleanup() {
  [ -n "$attack" ] && kill "$attack" 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  dropdb --if-exists --force -d "$base/postgres" "$db" 2>/dev/null || psql "$base/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
trap cleanup EXIT
rss() { grep -E 'VmRSS|VmHWM' "/proc/$server/status" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }

"$binary" migrate --database-url "$url" >/dev/null
JWT_HS256_SECRET=$secret "$binary" serve --database-url "$url" --listen-addr "$addr" \
  --rate-limit-rps 100000 --rate-limit-burst 100000 >/tmp/measure-dos-server.log 2>&1 &
server=$!
until curl -sf "http://$addr/readyz" >/dev/null; do sleep 0.2; done
reader=$(JWT_HS256_SECRET=$secret "$binary" token --scopes customers.read --sub attacker)
victim=$(JWT_HS256_SECRET=$secret "$binary" token --scopes "customers.read customers.write" --sub victim)

name=$("$dos" seed "$addr" "$victim" 600 | tail -1)
echo "seeded $name; server $(rss)"
echo "== 600 bodiless streams (first line: before the attack)"
"$dos" streams "$addr" "$reader" "$victim" "$name" 600
echo "readyz after: $(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz")"
echo "server $(rss)"
echo "== 20 unread watches"
: >/tmp/measure-dos-watches.log
"$dos" watches "$addr" "$reader" "$victim" "$name" 20 >/tmp/measure-dos-watches.log 2>&1 &
attack=$!
until grep -q holding /tmp/measure-dos-watches.log; do sleep 0.5; done
cat /tmp/measure-dos-watches.log
echo "server $(rss)"
curl -s "http://$addr/metrics" | grep -E '^customer_api_watch' || true
