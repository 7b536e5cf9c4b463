#!/usr/bin/env bash
# Drops the databases this checkout's tests created (tests/api/helpers.rs names them
# customer_api_test_<first 3 bytes of sha256(checkout path)>_<pid>_<n>), keeping the migrated
# template so the next run does not migrate again. Run by `make test` after the tests, whether
# they passed or not. Needs DATABASE_URL (set by scripts/ensure-postgres.sh).
set -euo pipefail
: "${DATABASE_URL:?DATABASE_URL is not set}"
namespace="customer_api_test_$(printf %s "$(cd "$(dirname "$0")/.." && pwd)" | sha256sum | cut -c1-6)"
admin="${DATABASE_URL%/*}/postgres"
psql -X -q -A -t "$admin" -c "SELECT datname FROM pg_database WHERE datname LIKE '${namespace}\_%' AND datname NOT LIKE '%\_tpl\_%'" |
while read -r name; do
  [ -n "$name" ] && psql -X -q "$admin" -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
done
