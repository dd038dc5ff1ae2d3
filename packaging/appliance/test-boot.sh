#!/usr/bin/env bash
# Boots the appliance image in qemu and sends calls through it (issue 14).
#
#   bash packaging/appliance/test-boot.sh     (after build.sh; root not needed to boot)
#
# A seed disk (label SIPDISP-SEED) gives the operator configuration: listen on every address,
# advertise 127.0.0.1:15060 (the host side of qemu's port forward), the admin listener on
# every address with a token, and the host's sipp uas (10.0.2.2:5070/5071 from the guest) as
# set 1. qemu: TCG (this machine's KVM hangs stock kernels), user networking forwarding
# udp 127.0.0.1:15060 -> 5060 and tcp 127.0.0.1:19090 -> 9090, the image opened with
# -snapshot (never modified). Measures boot time to "SIP answered", then 50 sipp calls from the
# host through the appliance to the host's uas, and scrapes /metrics from the host.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/appliance
[ -f "$OUT/disk.img" ] || { echo "appliance-test: run packaging/appliance/build.sh first" >&2; exit 1; }
WORK=$OUT/test
rm -rf "$WORK" && mkdir -p "$WORK/seed"
TOKEN=appliance-test-token-0123456789
cat >"$WORK/seed/sipdisp.toml" <<CONF
[server]
listen = ["udp:0.0.0.0:5060"]
advertise = "127.0.0.1:15060"
[admin]
listen = "0.0.0.0:9090"
token_file = "admin.token"
[dispatcher]
list_file = "dispatcher.list"
[[route]]
select = "1=0"
CONF
printf '1 sip:10.0.2.2:5070\n1 sip:10.0.2.2:5071\n' >"$WORK/seed/dispatcher.list"
echo "$TOKEN" >"$WORK/seed/admin.token"
mkfs.ext4 -q -L SIPDISP-SEED -d "$WORK/seed" "$WORK/seed.img" 8M >/dev/null
QEMU=""
cleanup() {
  set +e
  [ -n "$QEMU" ] && kill "$QEMU" 2>/dev/null && wait "$QEMU" 2>/dev/null
  pkill -f 'sipp -sn uas -i 127.0.0.1 -p 507[01]' 2>/dev/null
}
trap cleanup EXIT
fail() { echo "appliance-test: FAILED: $*" >&2; tail -n 30 "$WORK/serial.log" >&2; exit 1; }
sipp -sn uas -i 127.0.0.1 -p 5070 -bg >/dev/null || true
sipp -sn uas -i 127.0.0.1 -p 5071 -bg >/dev/null || true
START=$(date +%s.%N)
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2 -snapshot \
  -drive "file=$OUT/disk.img,if=virtio,format=raw" \
  -drive "file=$WORK/seed.img,if=virtio,format=raw" \
  -netdev "user,id=n0,hostfwd=udp:127.0.0.1:15060-:5060,hostfwd=tcp:127.0.0.1:19090-:9090,hostfwd=tcp:127.0.0.1:19100-:9100" \
  -device virtio-net-pci,netdev=n0 \
  -display none -serial "file:$WORK/serial.log" -monitor none &
QEMU=$!
# SIP answered: an OPTIONS to the forwarded port gets any response (sipdisp forwards it to a
# uas, which answers).
answered=""
for _ in $(seq 1 300); do
  if timeout 3 sipp -sn uac -s ping 127.0.0.1:15060 -i 127.0.0.1 -p 5084 -m 1 -nostdin \
      >/dev/null 2>&1; then
    answered=yes
    break
  fi
  kill -0 "$QEMU" 2>/dev/null || fail "qemu exited"
  sleep 1
done
[ -n "$answered" ] || fail "no SIP answer within 5 minutes"
BOOT=$(echo "$(date +%s.%N) - $START" | bc)
echo "appliance-test: SIP answered $(printf '%.0f' "$BOOT") s after qemu started (TCG)"
timeout 120 sipp -sn uac 127.0.0.1:15060 -i 127.0.0.1 -p 5085 -m 50 -r 10 -nostdin \
  -trace_stat -stf "$WORK/uac.csv" >"$WORK/uac.log" 2>&1 || fail "sipp uac: $(tail -n 5 "$WORK/uac.log")"
echo "appliance-test: $(tail -n1 "$WORK/uac.csv" | awk -F';' '{print $16}') successful calls through the appliance"
# Scrapes through qemu's user-mode TCP forward (slow under TCG): a few tries.
scrape() { # $1: port, $2: expected line start, rest: curl options
  local port=$1 want=$2
  shift 2
  for _ in $(seq 1 60); do
    # Not `grep -q`: it would stop reading at the first match and, under pipefail, curl's
    # broken pipe would fail a good scrape of a large page.
    if curl -sf -m 10 "$@" "127.0.0.1:$port/metrics" 2>/dev/null | grep "^$want" >/dev/null; then
      return 0
    fi
    sleep 1
  done
  return 1
}
scrape 19090 sipdisp_destination_up -H "Authorization: Bearer $TOKEN" || fail "/metrics from the host"
echo "appliance-test: /metrics scraped from the host"
scrape 19100 node_boot_time_seconds || fail "node exporter /metrics from the host"
echo "appliance-test: node exporter scraped from the host"
echo "appliance-test: disk image $(du -m --apparent-size "$OUT/disk.img" | cut -f1) MB ($(du -m "$OUT/disk.img" | cut -f1) MB used)"
echo "appliance-test: ok"
