#!/usr/bin/env bash
# Prepares the offline RustSec advisory database for `cargo deny --offline`.
#
# Usage: scripts/advisory-db.sh SNAPSHOT_DIR DB_ROOT
#
# The project checks advisories against a snapshot of RustSec's advisory-db (a plain,
# read-only directory, `../shared/advisory-db` by default, with a SNAPSHOT file naming its
# commit and date) and never fetches. cargo-deny, however, opens an advisory database only as
# a git checkout under its `db-path` (DB_ROOT), in a directory named after the database URL,
# and takes a lock file there. This script copies the snapshot into such a checkout, once
# per snapshot, and prints which snapshot is in use.
set -euo pipefail

src=${1:?usage: $0 SNAPSHOT_DIR DB_ROOT}
root=${2:?usage: $0 SNAPSHOT_DIR DB_ROOT}

if [[ ! -d "$src/crates" ]]; then
    echo "advisory-db: no RustSec advisory database at '$src' (a directory with crates/)." >&2
    echo "advisory-db: set ADVISORY_DB=/path/to/advisory-db (make lint ADVISORY_DB=...)." >&2
    exit 1
fi
snapshot=$(cat "$src/SNAPSHOT" 2>/dev/null || echo "unknown snapshot")
mkdir -p "$root"
root=$(cd "$root" && pwd)

# Where cargo-deny looks for the database of the configured URL (the name embeds a hash of
# the URL): ask it rather than re-implement its naming.
checkout=$(DENY_ADVISORY_DBS="$root" ${CARGO_DENY:-cargo-deny} -L debug --offline check advisories 2>&1 \
    | sed -n "s/.*Opening advisory database at '\(.*\)'.*/\1/p" | head -n 1 || true)
if [[ -z "$checkout" || "$checkout" != "$root"/* ]]; then
    echo "advisory-db: could not learn where cargo-deny opens the database under $root" >&2
    exit 1
fi

if [[ "$(cat "$checkout/.git/SNAPSHOT" 2>/dev/null)" != "$snapshot" ]]; then
    rm -rf "$checkout"
    mkdir -p "$checkout"
    cp -R "$src/." "$checkout/"
    chmod -R u+w "$checkout"
    (
        cd "$checkout"
        git init -q -b main
        git add -A
        # The commit carries the snapshot's date. cargo-deny's staleness check uses the time
        # the checkout was written, so the snapshot's own age is printed below instead.
        GIT_COMMITTER_DATE="${snapshot#* }" GIT_AUTHOR_DATE="${snapshot#* }" \
            git -c user.name=advisory-db -c user.email=advisory-db@localhost \
            -c commit.gpgsign=false commit -q -m "RustSec advisory-db snapshot $snapshot" \
            || git -c user.name=advisory-db -c user.email=advisory-db@localhost \
                -c commit.gpgsign=false commit -q -m "RustSec advisory-db snapshot $snapshot"
    )
    echo "$snapshot" > "$checkout/.git/SNAPSHOT"
fi
echo "advisory-db: RustSec snapshot ${snapshot:0:12} (${snapshot#* }), offline"
