#!/usr/bin/env bash
# Builds the edge appliance image: a bootable Debian 12 root file system with the .deb
# installed and enabled (issue 14).
#
#   bash packaging/appliance/build.sh        (root) -> target/appliance/{root.img,vmlinuz,initrd.img}
#
# debootstrap (minbase + systemd, kernel, initramfs, systemd-networkd with DHCP on every
# Ethernet link, systemd-timesyncd, the Prometheus node exporter), the .deb, the sysctl tuning
# it ships, a serial console (console=ttyS0 on the kernel command line, boot.sh), and
# sipdisp-seed.service: on first boot it copies sipdisp.toml, dispatcher.list and admin.token
# from a file system labelled SIPDISP-SEED (a small second disk) into /etc/sipdisp before
# sipdisp starts. The image boots with the kernel and initrd beside it (direct kernel boot:
# this machine's kernel has no vfat, so no EFI partition can be built here).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/appliance
ROOT=$OUT/root
mkdir -p "$OUT"
bash packaging/deb/build.sh --output "$OUT/sipdisp.deb" >/dev/null
rm -rf "$ROOT"
echo "appliance: debootstrap"
for try in 1 2 3; do
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,udev,procps,iproute2,linux-image-amd64,initramfs-tools,systemd-timesyncd,prometheus-node-exporter,adduser \
    bookworm "$ROOT" http://deb.debian.org/debian >"$OUT/debootstrap.log" 2>&1 && break
  [ "$try" = 3 ] && { tail -n 20 "$OUT/debootstrap.log"; exit 1; }
  rm -rf "$ROOT"
done
echo "appliance: install sipdisp"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp "$OUT/sipdisp.deb" "$ROOT/root/"
chroot "$ROOT" apt-get install -y -qq /root/sipdisp.deb >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
rm -f "$ROOT/root/sipdisp.deb"
echo sipdisp >"$ROOT/etc/hostname"
printf '/dev/vda / ext4 defaults 0 1\n' >"$ROOT/etc/fstab"
install -m 644 packaging/appliance/80-dhcp.network "$ROOT/etc/systemd/network/"
install -m 644 packaging/appliance/sipdisp-seed.service "$ROOT/etc/systemd/system/"
install -m 755 packaging/appliance/sipdisp-seed "$ROOT/usr/sbin/"
chroot "$ROOT" systemctl enable systemd-networkd systemd-timesyncd sipdisp-seed.service \
  prometheus-node-exporter sipdisp >/dev/null 2>&1
rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/var/cache/apt/"*.bin
cp -L "$ROOT/vmlinuz" "$OUT/vmlinuz"
cp -L "$ROOT/initrd.img" "$OUT/initrd.img"
echo "appliance: file system image"
rm -f "$OUT/root.img"
mkfs.ext4 -q -L sipdisp-root -d "$ROOT" "$OUT/root.img" 1536M
rm -rf "$ROOT"
ls -la "$OUT/root.img" "$OUT/vmlinuz" "$OUT/initrd.img"
