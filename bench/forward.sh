#!/usr/bin/env bash
# First forwarding figure (issue 4): OPTIONS through sipdisp (1 worker) to one responder, on
# loopback, at fixed offered rates, for each datapath. Reports the load balancer's CPU time per
# request+response (sum of its threads' schedstat run time), loss and round-trip percentiles.
#
#   bash bench/forward.sh [seconds-per-point] [rates...]
#
# Every process it starts is stopped at exit; all traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}; shift || true
rates=${*:-"5000 10000 20000 40000"}
cargo build --release -q -p sipdisp -p sipdisp-bench --bin sipdisp --bin sipdisp-load
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cpu_ns() { local t=0 v; for f in /proc/"$1"/task/*/schedstat; do read -r v _ < "$f"; t=$((t + v)); done; echo "$t"; }

printf '| datapath | offered/s | achieved/s | loss | sipdisp CPU µs per request | responder CPU µs per request | p50 µs | p99 µs |\n|---|---|---|---|---|---|---|---|\n'
for dp in io_uring mmsg; do
  for rate in $rates; do
    rport=$(free_port); lport=$(free_port)
    $bin/sipdisp-load respond --listen 127.0.0.1:$rport --seconds $((secs + 10)) > /dev/null & resp=$!; pids+=($resp)
    printf '1 sip:127.0.0.1:%s\n' "$rport" > "$work/list"
    printf '[server]\nlisten = ["127.0.0.1:%s"]\nworkers = 1\ndatapath = "%s"\n[dispatcher]\nlist_file = "%s"\n[[route]]\nselect = "1=0"\n' \
      "$lport" "$dp" "$work/list" > "$work/sipdisp.toml"
    $bin/sipdisp run --config "$work/sipdisp.toml" 2> "$work/log" & lb=$!; pids+=($lb)
    sleep 0.5
    before=$(cpu_ns $lb); rbefore=$(cpu_ns $resp)
    out=$($bin/sipdisp-load send --to 127.0.0.1:$lport --rate "$rate" --seconds "$secs" --json)
    after=$(cpu_ns $lb); rafter=$(cpu_ns $resp)
    kill $lb $resp; wait $lb 2>/dev/null || true
    python3 - "$dp" "$rate" "$before" "$after" "$rbefore" "$rafter" "$out" <<'PY'
import json, sys
dp, rate = sys.argv[1], int(sys.argv[2])
b, a, rb, ra = (int(x) for x in sys.argv[3:7])
out = json.loads(sys.argv[7])
n = max(out["sent"], 1)
print(f'| {dp} | {rate} | {out["achieved_rate"]} | {out["loss_pct"]:.3f}% | {(a - b) / 1000 / n:.2f} | {(ra - rb) / 1000 / n:.2f} | {out["p50_us"]} | {out["p99_us"]} |')
PY
  done
done
