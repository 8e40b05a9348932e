#!/usr/bin/env bash
# Regenerates the Python stubs (with .pyi) for protos/ into the directory given (default shared/gen).
set -euo pipefail
out="${1:-shared/gen}"
py="${PYTHON:-.venv/bin/python}"
bin="$(dirname "$py")"
rm -rf "$out/doppelganger"
mkdir -p "$out/doppelganger/v1"
PATH="$bin:$PATH" "$py" -m grpc_tools.protoc -I protos \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  protos/doppelganger/v1/*.proto
touch "$out/doppelganger/__init__.py" "$out/doppelganger/v1/__init__.py"
