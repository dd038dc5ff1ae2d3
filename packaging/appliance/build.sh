#!/usr/bin/env bash
# Builds the edge appliance image: a bootable Debian 12 root file system with the .deb
# installed and enabled (issue 14).
#
#   bash packaging/appliance/build.sh        (root) -> target/appliance/disk.img
#
# debootstrap (minbase + systemd, kernel, initramfs, systemd-networkd with DHCP on every
# Ethernet link, systemd-timesyncd, the Prometheus node exporter), the .deb, the sysctl tuning
# it ships, a serial console (console=ttyS0 on the kernel command line, boot.sh), and
# sipdisp-seed.service: on first boot it copies sipdisp.toml, dispatcher.list and admin.token
# from a file system labelled SIPDISP-SEED (a small second disk) into /etc/sipdisp before
# sipdisp starts.
#
# disk.img is a whole disk to write to the appliance's boot disk (`dd`, or a VM's disk): a GPT
# with a 1 MiB BIOS boot partition and the ext4 root, booted by GRUB for BIOS (SeaBIOS in a
# VM) with the kernel's console on the serial port. No EFI partition: this machine's kernel
# has no vfat, so none can be built here (../shared notes). GRUB's configuration boots the
# /vmlinuz and /initrd.img symlinks that Debian's kernel packages keep current, so a kernel
# upgrade with apt needs no update-grub.
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
    --include=grub-pc-bin,grub2-common,systemd,systemd-sysv,dbus,udev,procps,iproute2,linux-image-amd64,initramfs-tools,systemd-timesyncd,prometheus-node-exporter,adduser \
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
UUID=$(cat /proc/sys/kernel/random/uuid)
printf 'UUID=%s / ext4 defaults 0 1\n' "$UUID" >"$ROOT/etc/fstab"
mkdir -p "$ROOT/boot/grub"
cat >"$ROOT/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
menuentry 'sipdisp appliance (Debian 12)' {
  search --no-floppy --fs-uuid --set=root $UUID
  linux /vmlinuz root=UUID=$UUID ro console=tty0 console=ttyS0,115200 net.ifnames=0
  initrd /initrd.img
}
CFG
install -m 644 packaging/appliance/80-dhcp.network "$ROOT/etc/systemd/network/"
install -m 644 packaging/appliance/sipdisp-seed.service "$ROOT/etc/systemd/system/"
install -m 755 packaging/appliance/sipdisp-seed "$ROOT/usr/sbin/"
chroot "$ROOT" systemctl enable systemd-networkd systemd-timesyncd sipdisp-seed.service \
  prometheus-node-exporter sipdisp >/dev/null 2>&1
rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/var/cache/apt/"*.bin
echo "appliance: disk image"
# GPT: a BIOS boot partition (where GRUB's core image lives) and the root file system, made
# from the directory with mkfs.ext4 -d and copied in at its partition's offset.
ROOT_MB=1536
rm -f "$OUT/disk.img" "$OUT/root.img"
mkfs.ext4 -q -L sipdisp-root -U "$UUID" -d "$ROOT" "$OUT/root.img" "${ROOT_MB}M"
rm -rf "$ROOT"
truncate -s $((ROOT_MB + 3))M "$OUT/disk.img"
sfdisk -q "$OUT/disk.img" <<PARTS
label: gpt
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=bios-boot
start=4096, size=$((ROOT_MB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=sipdisp-root
PARTS
dd if="$OUT/root.img" of="$OUT/disk.img" bs=1M seek=2 conv=notrunc,sparse status=none
rm -f "$OUT/root.img"
# GRUB for BIOS, installed by the image's own grub-install through a loop device.
LOOP=$(losetup -P --show -f "$OUT/disk.img")
MNT=$OUT/mnt
mkdir -p "$MNT"
unmount() {
  set +e
  for m in dev proc sys ""; do mountpoint -q "$MNT/$m" && umount "$MNT/$m"; done
  losetup -d "$LOOP"
}
trap unmount EXIT
[ -b "${LOOP}p2" ] || partx -a "$LOOP"
mount "${LOOP}p2" "$MNT"
for m in dev proc sys; do mount --bind "/$m" "$MNT/$m"; done
chroot "$MNT" grub-install --target=i386-pc --modules="part_gpt ext2" "$LOOP" >"$OUT/grub.log" 2>&1 \
  || { cat "$OUT/grub.log"; exit 1; }
unmount
trap - EXIT
set -e
ls -la "$OUT/disk.img"
