#!/usr/bin/env bash
# One busy peer over two workers: spread = "flow" vs "random" (see bench/spread.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SIPDISP_BIN:-}" ]; then
  cargo build --release -q -p sipdisp --bin sipdisp
fi
cargo build --release -q -p sipdisp-bench --bin sipdisp-load
exec python3 bench/spread.py "$@"
