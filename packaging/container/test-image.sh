#!/usr/bin/env bash
# Builds the container image (packaging/container/build.sh) and runs it under podman
# (issue 14).
#
#   bash packaging/container/test-image.sh      (root)
#
# With podman (runc, the file limits this machine allows) and the host network so all
# traffic stays on 127.0.0.1:
#   - the default seccomp profile: sipdisp logs that io_uring is unavailable and uses mmsg;
#   - packaging/container/seccomp-io_uring.json: sipdisp uses io_uring;
# and in both, sipp calls pass through the container to two sipp uas on the host.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
WORK=$REPO/target/container-test
mkdir -p "$WORK"
# The image store that build.sh fills.
STORE=(--root "$REPO/target/container/storage" --runroot "$REPO/target/container/run")
export CONTAINERS_CONF=$WORK/containers.conf
cat >"$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
NAME=sipdisp-test-$$
cleanup() {
  set +e
  podman "${STORE[@]}" rm -f "$NAME" >/dev/null 2>&1
  pkill -f 'sipp -sn uas -i 127.0.0.1 -p 507[01]' 2>/dev/null
}
trap cleanup EXIT
say() { echo "container-test: $*"; }
fail() { echo "container-test: FAILED: $*" >&2; exit 1; }

say "build the image (packaging/container/build.sh)"
bash packaging/container/build.sh
# The image's configuration with the operator's `advertise`: here the host's loopback, which
# the sipp peers reach (the image's placeholder name "sipdisp" resolves nowhere here).
sed 's/^advertise = .*/advertise = "127.0.0.1"/' packaging/container/sipdisp.toml >"$WORK/sipdisp.toml"
cp sysconfig/dispatcher.list "$WORK/dispatcher.list"
chmod 644 "$WORK/sipdisp.toml" "$WORK/dispatcher.list"
MOUNT=(-v "$WORK/sipdisp.toml:/etc/sipdisp/sipdisp.toml:ro")
sipp -sn uas -i 127.0.0.1 -p 5070 -bg >/dev/null || true
sipp -sn uas -i 127.0.0.1 -p 5071 -bg >/dev/null || true

run_case() { # $1: label, $2: expected log text, rest: podman run options
  local label=$1 want=$2
  shift 2
  podman "${STORE[@]}" run -d --rm --network host --name "$NAME" "${MOUNT[@]}" "$@" sipdisp:latest >/dev/null \
    || fail "$label: podman run"
  local end=$((SECONDS + 30))
  until podman "${STORE[@]}" logs "$NAME" 2>&1 | grep -q "listening on"; do
    [ $SECONDS -lt $end ] || fail "$label: not listening: $(podman "${STORE[@]}" logs "$NAME" 2>&1)"
    sleep 0.3
  done
  # Into a variable first: `podman logs | grep -q` under pipefail fails when grep stops
  # reading before podman has written everything.
  local logs
  logs=$(podman "${STORE[@]}" logs "$NAME" 2>&1)
  grep -q "$want" <<<"$logs" || fail "$label: expected \"$want\" in: $logs"
  local user
  user=$(podman "${STORE[@]}" exec "$NAME" id -un)
  [ "$user" = sipdisp ] || fail "$label: runs as $user"
  timeout 60 sipp -sn uac 127.0.0.1:5060 -i 127.0.0.1 -p 5083 -m 50 -r 25 -nostdin \
    -trace_stat -stf "$WORK/uac.csv" >"$WORK/uac.log" 2>&1 \
    || fail "$label: sipp uac: $(tail -n 5 "$WORK/uac.log")"
  say "$label: $(tail -n1 "$WORK/uac.csv" | awk -F';' '{print $16}') successful calls; $(podman "${STORE[@]}" logs "$NAME" 2>&1 | grep -o 'datapath [a-z_]*' | head -n1)"
  podman "${STORE[@]}" rm -f "$NAME" >/dev/null
}
run_case "default seccomp" "io_uring unavailable"
run_case "seccomp-io_uring.json" "datapath io_uring" \
  --security-opt "seccomp=$REPO/packaging/container/seccomp-io_uring.json"
say "ok"
