#!/usr/bin/env bash
# Fails when shared/gen differs from what protos/ generates now (run `make protos` to fix).
set -euo pipefail
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$(dirname "$0")/gen_protos.sh" "$tmp" >/dev/null 2>&1
if ! diff -r -q -x __pycache__ "$tmp/doppelganger" shared/gen/doppelganger; then
  echo "shared/gen is out of date with protos/: run 'make protos' and commit the result" >&2
  exit 1
fi
echo "generated stubs match protos/"
