#!/usr/bin/env bash
# Forwarding benchmark (issue 7): the same SIP traffic, on loopback, through
#   direct (generator -> responder), the raw UDP forwarder (the floor), sipdisp io_uring,
#   sipdisp mmsg, Kamailio 5.6.3 stateless (ds_select_dst + forward) and stateful (t_relay +
#   failure route with ds_next_dst),
# at several offered rates, three repetitions, medians. Writes bench/results/<stamp>.{md,json}.
#
#   bench/run.sh [--quick] [--reps N] [--seconds S] [--rates "5000 10000"] [--systems "raw,kam-stateless"]
#
# Installs Kamailio when absent (apt-get, as root). Every process it starts is stopped at exit;
# every load loop is bounded in time and count; all traffic stays in 127.0.0.0/8.
# SIPDISP_BIN=/path/to/sipdisp uses that binary instead of building target/release/sipdisp.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v kamailio >/dev/null 2>&1 && [ ! -x /usr/sbin/kamailio ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "run.sh: installing kamailio (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q kamailio >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q kamailio >/dev/null; }
  else
    echo "run.sh: kamailio is not installed; run as root or: sudo apt-get install -y kamailio" >&2
    exit 1
  fi
fi
# Kamailio's Debian package enables a system service; the benchmark starts its own instances.
if [ -z "${SIPDISP_BIN:-}" ]; then
  cargo build --release -q -p sipdisp --bin sipdisp
fi
cargo build --release -q -p sipdisp-bench --bin sipdisp-load
exec python3 bench/run.py "$@"
