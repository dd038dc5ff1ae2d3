#!/usr/bin/env bash
# Builds the container image without a registry and runs it under podman (issue 14).
#
#   bash packaging/container/test-image.sh      (root; builds the .deb first)
#
# Image: a Debian 12 root from debootstrap (the .deb test's cached root) with the .deb
# installed by apt, packaging/container/sipdisp.toml as /etc/sipdisp/sipdisp.toml, user
# `sipdisp`, entrypoint `sipdisp run`; committed with buildah into private storage under
# target/container-test (never the machine's default store). Then, with podman (runc, the
# file limits this machine allows) and the host network so all traffic stays on 127.0.0.1:
#   - the default seccomp profile: sipdisp logs that io_uring is unavailable and uses mmsg;
#   - packaging/container/seccomp-io_uring.json: sipdisp uses io_uring;
# and in both, sipp calls pass through the container to two sipp uas on the host.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
WORK=$REPO/target/container-test
DEBWORK=$REPO/target/deb-test
mkdir -p "$WORK" "$DEBWORK"
STORE=(--root "$WORK/storage" --runroot "$WORK/run")
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
  [ -n "${CTR:-}" ] && buildah "${STORE[@]}" rm "$CTR" >/dev/null 2>&1
}
trap cleanup EXIT
say() { echo "container-test: $*"; }
fail() { echo "container-test: FAILED: $*" >&2; exit 1; }

DEB=$WORK/sipdisp.deb
say "build the .deb"
bash packaging/deb/build.sh --output "$DEB" >/dev/null
if [ ! -f "$DEBWORK/root.tar" ]; then
  say "debootstrap bookworm (cached in $DEBWORK/root.tar)"
  rm -rf "$DEBWORK/boot-root"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps bookworm \
    "$DEBWORK/boot-root" http://deb.debian.org/debian >"$DEBWORK/debootstrap.log" 2>&1 \
    || fail "debootstrap (see $DEBWORK/debootstrap.log)"
  tar -C "$DEBWORK/boot-root" -cf "$DEBWORK/root.tar" .
  rm -rf "$DEBWORK/boot-root"
fi

say "buildah: root + .deb + container configuration"
START=$SECONDS
CTR=$(buildah "${STORE[@]}" from scratch)
MNT=$(buildah "${STORE[@]}" mount "$CTR")
tar -C "$MNT" -xf "$DEBWORK/root.tar"
cp /etc/resolv.conf "$MNT/etc/resolv.conf"
cp "$DEB" "$MNT/root/sipdisp.deb"
buildah "${STORE[@]}" run --isolation chroot "$CTR" -- apt-get install -y -qq /root/sipdisp.deb \
  >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; fail "apt-get install in the image"; }
rm -f "$MNT/root/sipdisp.deb"
rm -rf "$MNT/var/lib/apt/lists/"* "$MNT/var/cache/apt/"*.bin
install -m 644 packaging/container/sipdisp.toml "$MNT/etc/sipdisp/sipdisp.toml"
buildah "${STORE[@]}" umount "$CTR" >/dev/null
buildah "${STORE[@]}" config --user sipdisp --entrypoint '["/usr/bin/sipdisp"]' \
  --cmd 'run --config /etc/sipdisp/sipdisp.toml' --port 5060/udp "$CTR"
buildah "${STORE[@]}" commit -q "$CTR" sipdisp:test >/dev/null
buildah "${STORE[@]}" rm "$CTR" >/dev/null; CTR=""
SIZE=$(podman "${STORE[@]}" image inspect sipdisp:test --format '{{.Size}}')
say "image built in $((SECONDS - START)) s, $((SIZE / 1024 / 1024)) MB"

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
  podman "${STORE[@]}" run -d --rm --network host --name "$NAME" "${MOUNT[@]}" "$@" sipdisp:test >/dev/null \
    || fail "$label: podman run"
  local end=$((SECONDS + 30))
  until podman "${STORE[@]}" logs "$NAME" 2>&1 | grep -q "listening on"; do
    [ $SECONDS -lt $end ] || fail "$label: not listening: $(podman "${STORE[@]}" logs "$NAME" 2>&1)"
    sleep 0.3
  done
  podman "${STORE[@]}" logs "$NAME" 2>&1 | grep -q "$want" \
    || fail "$label: expected \"$want\" in: $(podman "${STORE[@]}" logs "$NAME" 2>&1)"
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
