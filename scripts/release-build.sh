#!/usr/bin/env bash
# release-build.sh: the release build of customer-api, as the Dockerfile runs it and as
# `make release` runs it on a machine without Docker.
#
#   scripts/release-build.sh deps             dependencies only: stub every workspace source the
#                                             manifests name, then build (the image's cached layer)
#   scripts/release-build.sh build OUT_DIR    release build (--locked), checked, copied to OUT_DIR
#   scripts/release-build.sh check BINARY     the checks alone
#   scripts/release-build.sh skeleton DIR     copy what the Dockerfile's dependency layer copies into
#                                             DIR and stub it (what `deps` builds; used by a test)
#
# The checks: the binary is stripped (no .symtab, no .debug_* sections but the loaded
# .debug_gdb_scripts), smaller than MAX_BINARY_BYTES (25 MB), needs no shared library beyond
# glibc and libgcc (what the distroless cc runtime image has), and runs (`--version`).
#
# Run from the workspace root (the Dockerfile's WORKDIR). CARGO, CARGO_TARGET_DIR honoured.

set -euo pipefail

CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
MAX_BINARY_BYTES=${MAX_BINARY_BYTES:-25000000}
BUILD=(build --release --locked -p customer-api --bin customer-api)

# Every source file a workspace manifest needs to exist (explicit target paths, build
# scripts, the crate roots); `deps` stubs them. Keep in step with the Cargo.toml files: the
# deploy tests build the skeleton and ask cargo for its targets.
STUBS=(
  src/lib.rs
  src/main.rs
  build.rs
  tests/api/main.rs
  tests/cluster/main.rs
  gateway/src/lib.rs
  gateway/build.rs
  bench/src/main.rs
  bench/build.rs
)
# The manifests the Dockerfile copies into the dependency layer.
MANIFESTS=(Cargo.toml Cargo.lock gateway/Cargo.toml bench/Cargo.toml)

log() { printf 'release-build: %s\n' "$*" >&2; }
die() { printf 'release-build: ERROR: %s\n' "$*" >&2; exit 1; }

stub() {
  local file
  for file in "${STUBS[@]}"; do
    mkdir -p "$(dirname "$file")"
    case $file in
      */main.rs | build.rs | */build.rs) printf 'fn main() {}\n' >"$file" ;;
      *) printf '//! Dependency-layer stub.\n' >"$file" ;;
    esac
  done
}

check() {
  local binary=$1 size needed lib unstripped
  [[ -x $binary ]] || die "$binary: no such executable"
  size=$(stat -c %s "$binary")
  # .debug_gdb_scripts is loaded at run time (it only names pretty-printers): strip keeps it.
  unstripped=$(readelf -S --wide "$binary" | grep -Eo '[[:space:]]\.(symtab|debug_[a-z_]+)[[:space:]]' |
    grep -v debug_gdb_scripts | tr -d ' ' | tr '\n' ' ' || true)
  [[ -z $unstripped ]] || die "$binary is not stripped: it has $unstripped"

  ((size < MAX_BINARY_BYTES)) || die "$binary is $size bytes, not under $MAX_BINARY_BYTES"
  needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  for lib in $needed; do
    case $lib in
      libc.so.* | libm.so.* | libgcc_s.so.* | ld-linux*.so.* | libpthread.so.* | libdl.so.* | librt.so.*) ;;
      *) die "$binary needs $lib, which the distroless cc image does not have" ;;
    esac
  done
  "$binary" --version >/dev/null || die "$binary --version failed"
  log "$binary: stripped, $size bytes (limit $MAX_BINARY_BYTES), needs only: $(echo $needed)"
}

case ${1:-} in
  deps)
    stub
    "$CARGO" "${BUILD[@]}"
    # The stubs must not satisfy the real build: drop their artifacts so `build` compiles
    # the workspace crates again whatever the copied files' modification times are.
    rm -rf "$TARGET_DIR"/release/.fingerprint/customer-api-* "$TARGET_DIR"/release/.fingerprint/gateway-* \
      "$TARGET_DIR"/release/deps/customer_api-* "$TARGET_DIR"/release/deps/libcustomer_api-* \
      "$TARGET_DIR"/release/deps/libgateway-* "$TARGET_DIR"/release/deps/gateway-* \
      "$TARGET_DIR"/release/build/customer-api-* "$TARGET_DIR"/release/build/gateway-* \
      "$TARGET_DIR"/release/customer-api
    ;;
  build)
    out=${2:?usage: release-build.sh build OUT_DIR}
    "$CARGO" "${BUILD[@]}"
    check "$TARGET_DIR/release/customer-api"
    mkdir -p "$out"
    cp "$TARGET_DIR/release/customer-api" "$out/customer-api"
    log "copied to $out/customer-api"
    ;;
  check)
    check "${2:?usage: release-build.sh check BINARY}"
    ;;
  skeleton)
    dir=${2:?usage: release-build.sh skeleton DIR}
    root=$(pwd)
    mkdir -p "$dir"
    for file in "${MANIFESTS[@]}"; do
      mkdir -p "$dir/$(dirname "$file")"
      cp "$root/$file" "$dir/$file"
    done
    (cd "$dir" && stub)
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
