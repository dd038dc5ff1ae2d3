#!/usr/bin/env bash
# Overload priority (issue 13): responses relayed and new requests refused vs dropped at 3x
# the loss-free rate (see bench/overload.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SIPDISP_BIN:-}" ]; then
  cargo build --release -q -p sipdisp --bin sipdisp
fi
cargo build --release -q -p sipdisp-bench --bin sipdisp-load
exec python3 bench/overload.py "$@"
