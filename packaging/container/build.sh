#!/usr/bin/env bash
# Builds sipdisp's container image without a registry (issue 14).
#
#   bash packaging/container/build.sh      (root; builds the .deb first)
#       -> image sipdisp:latest in the private store target/container/storage
#          and target/container/sipdisp.oci.tar (load it with `podman load -i`)
#
# A Debian 12 minbase root from debootstrap (cached in target/container/minbase.tar) with the .deb installed by apt, packaging/container/sipdisp.toml as
# /etc/sipdisp/sipdisp.toml, user `sipdisp`, entrypoint `sipdisp run`; committed with buildah
# into private storage (never the machine's default store). The Dockerfile builds the same
# content where a registry is reachable.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
WORK=$REPO/target/container
mkdir -p "$WORK"
STORE=(--root "$WORK/storage" --runroot "$WORK/run")
CTR=""
cleanup() {
  set +e
  [ -n "$CTR" ] && buildah "${STORE[@]}" rm "$CTR" >/dev/null 2>&1
}
trap cleanup EXIT
say() { echo "container: $*"; }
fail() { echo "container: FAILED: $*" >&2; exit 1; }

DEB=$WORK/sipdisp.deb
say "build the .deb"
bash packaging/deb/build.sh --output "$DEB" >/dev/null
# The container's root: debootstrap's minbase alone (no init system: the container runs
# sipdisp itself), cached between runs.
ROOTTAR=$WORK/minbase.tar
if [ ! -f "$ROOTTAR" ]; then
  say "debootstrap bookworm minbase (cached in $ROOTTAR)"
  rm -rf "$WORK/root"
  for try in 1 2 3; do
    debootstrap --variant=minbase bookworm "$WORK/root" http://deb.debian.org/debian \
      >"$WORK/debootstrap.log" 2>&1 && break
    [ "$try" = 3 ] && fail "debootstrap (see $WORK/debootstrap.log)"
    rm -rf "$WORK/root"
  done
  tar -C "$WORK/root" -cf "$ROOTTAR" .
  rm -rf "$WORK/root"
fi

say "buildah: root + .deb + container configuration"
START=$SECONDS
CTR=$(buildah "${STORE[@]}" from scratch)
MNT=$(buildah "${STORE[@]}" mount "$CTR")
tar -C "$MNT" -xf "$ROOTTAR"
cp /etc/resolv.conf "$MNT/etc/resolv.conf"
cp "$DEB" "$MNT/root/sipdisp.deb"
buildah "${STORE[@]}" run --isolation chroot "$CTR" -- apt-get install -y -qq /root/sipdisp.deb \
  >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; fail "apt-get install in the image"; }
rm -f "$MNT/root/sipdisp.deb"
rm -rf "$MNT/var/lib/apt/lists/"* "$MNT/var/cache/apt/"*.bin
# What a container never reads (as Debian's -slim images leave out): documentation, manuals,
# translations (sipdisp's copyright file stays).
find "$MNT/usr/share/doc" -mindepth 1 -not -path "*/sipdisp*" -delete
rm -rf "$MNT/usr/share/man/"* "$MNT/usr/share/info/"* "$MNT/usr/share/locale/"*
install -m 644 packaging/container/sipdisp.toml "$MNT/etc/sipdisp/sipdisp.toml"
buildah "${STORE[@]}" umount "$CTR" >/dev/null
buildah "${STORE[@]}" config --user sipdisp --entrypoint '["/usr/bin/sipdisp"]' \
  --cmd 'run --config /etc/sipdisp/sipdisp.toml' --port 5060/udp "$CTR"
buildah "${STORE[@]}" commit -q "$CTR" sipdisp:latest >/dev/null
buildah "${STORE[@]}" rm "$CTR" >/dev/null; CTR=""
SIZE=$(podman "${STORE[@]}" image inspect sipdisp:latest --format '{{.Size}}')
say "image built in $((SECONDS - START)) s, $((SIZE / 1024 / 1024)) MB"

rm -f "$WORK/sipdisp.oci.tar"
buildah "${STORE[@]}" push -q sipdisp:latest "oci-archive:$WORK/sipdisp.oci.tar:sipdisp:latest" >/dev/null
say "$WORK/sipdisp.oci.tar ($(( $(stat -c %s "$WORK/sipdisp.oci.tar") / 1024 / 1024 )) MB)"
