#!/usr/bin/env bash
# Vendors the Swagger UI the binary serves at /docs (src/docs.rs include_bytes! them): the
# pinned npm package swagger-ui-dist, only the files the page loads plus the licence.
# Usage: scripts/vendor-swagger-ui.sh [VERSION]   (then commit assets/swagger-ui/)
set -euo pipefail
version="${1:-5.35.0}"
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf "swagger-ui-dist-$version.tgz")
out=assets/swagger-ui
rm -rf "$out"
mkdir -p "$out"
for file in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css favicon-32x32.png LICENSE NOTICE; do
  cp "$work/package/$file" "$out/$file"
done
echo "swagger-ui-dist@$version" > "$out/VERSION"
echo "vendored swagger-ui-dist@$version into $out"
