#!/usr/bin/env bash
# Install test of the .deb in a minimal Debian 12 booted with systemd-nspawn (issue 14).
#
#   bash packaging/deb/test-install.sh        (root; builds the .deb first)
#
# 1. debootstrap a minbase bookworm root with systemd (cached as target/deb-test/root.tar),
# 2. `apt-get install` the .deb inside it, `systemd-analyze verify` the unit, lintian the .deb,
# 3. boot it with systemd-nspawn (host network shared: everything stays on 127.0.0.1),
# 4. the unit comes up; sipp calls pass through it to two sipp uas on the host; `sipdisp ctl`
#    and /metrics answer,
# 5. an upgrade (revision 2) keeps an edited conffile and restarts the unit,
# 6. `apt-get purge` leaves no file, directory or user behind.
# Everything it starts is stopped on exit. Needs: debootstrap, systemd-container, lintian,
# sip-tester, curl (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
WORK=$REPO/target/deb-test
ROOT=$WORK/root
mkdir -p "$WORK"
NSPAWN=""
cleanup() {
  set +e
  pkill -f 'sipp -sn uas -i 127.0.0.1 -p 507[0-3]' 2>/dev/null
  if [ -n "$NSPAWN" ]; then kill -TERM "$NSPAWN" 2>/dev/null; wait "$NSPAWN" 2>/dev/null; fi
  rm -rf "$ROOT"
}
trap cleanup EXIT
say() { echo "deb-test: $*"; }
fail() { echo "deb-test: FAILED: $*" >&2; [ -f "$WORK/boot.log" ] && tail -n 40 "$WORK/boot.log" >&2; exit 1; }

say "build the packages (revision 1 and 2)"
DEB1=$WORK/sipdisp_rev1.deb
DEB2=$WORK/sipdisp_rev2.deb
bash packaging/deb/build.sh --deb-revision 1 --output "$DEB1" >/dev/null
bash packaging/deb/build.sh --deb-revision 2 --output "$DEB2" >/dev/null
say "lintian $DEB1"
lintian --fail-on error,warning "$DEB1" 2>&1 | grep -v "running with root privileges" || true
lintian --fail-on error,warning "$DEB1" >/dev/null 2>&1 || fail "lintian reports errors or warnings"

if [ ! -f "$WORK/root.tar" ]; then
  say "debootstrap bookworm (cached in $WORK/root.tar)"
  rm -rf "$WORK/boot-root"
  for try in 1 2 3; do
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps bookworm \
      "$WORK/boot-root" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 && break
    [ "$try" = 3 ] && fail "debootstrap (see $WORK/debootstrap.log)"
    rm -rf "$WORK/boot-root"
  done
  tar -C "$WORK/boot-root" -cf "$WORK/root.tar" .
  rm -rf "$WORK/boot-root"
fi
rm -rf "$ROOT" && mkdir -p "$ROOT" && tar -C "$ROOT" -xf "$WORK/root.tar"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp "$DEB1" "$DEB2" "$ROOT/root/"

say "apt-get install $(basename "$DEB1")"
chroot "$ROOT" apt-get install -y -qq "/root/$(basename "$DEB1")" >"$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log"; fail "apt-get install"; }
say "systemd-analyze verify"
chroot "$ROOT" systemd-analyze verify --man=no sipdisp.service 2>&1 | tee "$WORK/verify.log"
[ -s "$WORK/verify.log" ] && fail "systemd-analyze verify printed warnings"
chroot "$ROOT" getent passwd sipdisp >/dev/null || fail "no sipdisp user"

boot() {
  systemd-nspawn -D "$ROOT" --boot --register=no --keep-unit --console=pipe >"$WORK/boot.log" 2>&1 &
  NSPAWN=$!
  local end=$((SECONDS + 60))
  LEADER=""
  while [ $SECONDS -lt $end ]; do
    LEADER=$(pgrep -P "$NSPAWN" | head -n1 || true)
    if [ -n "$LEADER" ] && nsenter -t "$LEADER" -a systemctl is-active --quiet sipdisp 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  [ -n "$LEADER" ] && nsenter -t "$LEADER" -a systemctl status sipdisp --no-pager >&2 || true
  fail "the sipdisp unit did not become active within 60 s"
}
inside() { nsenter -t "$LEADER" -a "$@"; }
halt() { kill -TERM "$NSPAWN"; wait "$NSPAWN" || true; NSPAWN=""; }

say "boot with systemd-nspawn"
START=$SECONDS
boot
say "unit active after $((SECONDS - START)) s"
say "systemd-analyze security: $(inside systemd-analyze security sipdisp.service --no-pager 2>/dev/null | tail -n1)"
# The list the package ships: set 1 = 127.0.0.1:5070 and :5071; the uas run on the host.
sipp -sn uas -i 127.0.0.1 -p 5070 -bg >/dev/null || true
sipp -sn uas -i 127.0.0.1 -p 5071 -bg >/dev/null || true
sleep 0.5
say "sipp: 50 calls through the installed unit"
timeout 60 sipp -sn uac 127.0.0.1:5060 -i 127.0.0.1 -p 5082 -m 50 -r 25 -nostdin \
  -trace_stat -stf "$WORK/uac.csv" >"$WORK/uac.log" 2>&1 || fail "sipp uac: $(tail -n 5 "$WORK/uac.log")"
OK=$(tail -n1 "$WORK/uac.csv" | awk -F';' '{print $16}')
say "sipp: ${OK:-?} successful calls"
inside sipdisp ctl dispatcher.list >"$WORK/ctl.out" || fail "sipdisp ctl"
grep -q "sip:127.0.0.1:5070" "$WORK/ctl.out" || fail "ctl output: $(cat "$WORK/ctl.out")"
# To a file first: `curl | grep -q` under pipefail fails whenever grep stops reading before
# curl has written the whole page (curl then exits 23 on the closed pipe).
curl -sf -m 10 -o "$WORK/metrics.out" 127.0.0.1:9090/metrics || fail "/metrics: curl exited $?"
grep -q '^sipdisp_destination_up' "$WORK/metrics.out" || fail "/metrics: no sipdisp_destination_up in $(wc -l <"$WORK/metrics.out") lines"
pkill -f 'sipp -sn uas -i 127.0.0.1 -p 507[01]' || true

say "upgrade to $(basename "$DEB2") keeps an edited conffile"
echo "# edited by the operator" >>"$ROOT/etc/sipdisp/dispatcher.list"
inside apt-get install -y -qq "/root/$(basename "$DEB2")" >"$WORK/upgrade.log" 2>&1 \
  || { cat "$WORK/upgrade.log"; fail "upgrade"; }
grep -q "edited by the operator" "$ROOT/etc/sipdisp/dispatcher.list" || fail "the upgrade lost the edit"
inside systemctl is-active --quiet sipdisp || fail "not active after the upgrade"
halt

say "purge leaves nothing behind"
chroot "$ROOT" apt-get purge -y -qq sipdisp >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; fail "purge"; }
for p in /etc/sipdisp /usr/bin/sipdisp /usr/lib/systemd/system/sipdisp.service /etc/default/sipdisp \
         /etc/sysctl.d/99-sipdisp.conf /usr/share/sipdisp /usr/share/doc/sipdisp \
         /etc/systemd/system/multi-user.target.wants/sipdisp.service; do
  [ -e "$ROOT$p" ] && fail "left behind: $p"
done
chroot "$ROOT" getent passwd sipdisp >/dev/null && fail "user sipdisp left behind"
say "ok"
