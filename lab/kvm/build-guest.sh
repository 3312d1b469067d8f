#!/usr/bin/env bash
# Build the lab's tiny guest from Debian packages, reproducibly:
#   $OUT/vmlinux      ELF kernel extracted from Debian's vmlinuz (QEMU boots it via PVH)
#   $OUT/initrd.gz    busybox + qemu-ga + virtio/ext4 modules, byte-identical across runs
#   $OUT/data.qcow2   a template ext4 data disk (copy it per guest; never boot it directly)
# OUT defaults to ${HAVEN_LAB_STATE:-/var/lib/haven-lab}/kvm/guest. Skips work already done
# unless FORCE=1.
#
# Guest contract (what tests and the driver rely on):
#   - /dev/vda (ext4) is mounted on /data, /dev/vdb on /data2 when present;
#   - qemu-ga listens on the virtio port org.qemu.guest_agent.0 and supports guest-exec,
#     guest-fsfreeze-*, guest-shutdown; busybox gives sh, sync, dd, sleep, kill, pidof ...;
#   - the guest powers off when asked (the domain must have ACPI: <features><acpi/>): by the
#     agent's guest-shutdown, by the ACPI power button (virsh shutdown --mode acpi), or by
#     `poweroff`/`halt`/`reboot` inside; PID 1 then stops every process, syncs, unmounts
#     the data disks and powers off through ACPI (S5): QEMU exits ~0.15 s after the request;
#   - kernel argument `haven.noagent` boots the guest without qemu-ga (an unresponsive agent),
#     `haven.nobutton` without the power-button handler (with both, only a forced stop works).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-${HAVEN_LAB_STATE:-/var/lib/haven-lab}/kvm/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
EPOCH=1700000000 # fixed mtime for every file in the initrd

if [[ -z ${FORCE:-} && -s $OUT/vmlinux && -s $OUT/initrd.gz && -s $OUT/data.qcow2 ]]; then
  echo "guest already built in $OUT"; exit 0
fi
for t in qemu-img busybox cpio mkfs.ext4 /usr/sbin/qemu-ga; do
  command -v "$t" >/dev/null || { echo "missing $t: run lab/kvm/ci-setup.sh" >&2; exit 1; }
done

WORK=$(mktemp -d)
chmod 0755 "$WORK" # apt's download user (_apt) must reach $WORK/deb
trap 'rm -rf "$WORK"' EXIT

# --- kernel: the exact image linux-image-amd64 depends on; downloaded, never installed.
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
KPKG=$(kernel_pkg)
if [[ -z $KPKG ]]; then # package lists absent (a trimmed image): fetch them once
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  KPKG=$(kernel_pkg)
fi
[[ -n $KPKG ]] || { echo "cannot resolve linux-image-amd64" >&2; exit 1; }
KVER=${KPKG#linux-image-}
mkdir -m 0777 "$WORK/deb" # apt drops privileges to _apt for downloads
(cd "$WORK/deb" && apt-get download -qq "$KPKG")
dpkg-deb -x "$WORK"/deb/"$KPKG"_*.deb "$WORK/k"
python3 - "$WORK/k/boot/vmlinuz-$KVER" "$OUT/vmlinux" <<'PY'
# vmlinuz = setup code + an xz stream holding the ELF vmlinux; QEMU's PVH entry boots the
# ELF directly (~2x faster to an agent answer than the bzImage path under TCG).
import lzma, sys
blob = open(sys.argv[1], "rb").read()
pos = blob.find(b"\xfd7zXZ\x00")
assert pos >= 0, "no xz payload in vmlinuz"
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob[pos:])
assert elf[:4] == b"\x7fELF", "payload is not an ELF"
open(sys.argv[2], "wb").write(elf)
PY

# --- initramfs
R=$WORK/root
mkdir -p "$R"/{bin,sbin,dev,proc,sys,run,tmp,data,data2,etc,var/run,lib/modules}
cp /bin/busybox "$R/bin/busybox"
for app in $("$R/bin/busybox" --list); do
  [[ $app == busybox ]] || ln -s /bin/busybox "$R/bin/$app"
done
# evdev + button: the ACPI power button as an input device that /init watches
MODS="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
  virtio_console crc16 mbcache jbd2 crc32c_generic ext4 evdev button"
for m in $MODS; do
  f=$(find "$WORK/k/lib/modules/$KVER" -name "$m.ko*" | head -1)
  [[ -n $f ]] || { echo "module $m not found" >&2; exit 1; }
  case $f in
    *.xz) xz -dc "$f" >"$R/lib/modules/$m.ko" ;;
    *.zst) zstd -dqc "$f" >"$R/lib/modules/$m.ko" ;;
    *) cp "$f" "$R/lib/modules/$m.ko" ;;
  esac
done
echo "$MODS" | tr -s ' \n' ' ' >"$R/lib/modules/order"
mkdir -p "$R/usr/sbin"
cp /usr/sbin/qemu-ga "$R/usr/sbin/qemu-ga"
for lib in $(ldd /usr/sbin/qemu-ga | grep -o '/[^ ]*'); do
  mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"
done
# qemu-ga's guest-shutdown runs `/sbin/shutdown -P|-H|-r +0 <message>` and reports success
# when it exits 0: ask PID 1 to power off (busybox's `poweroff` signal) and return at once.
printf '#!/bin/sh\nkill -USR2 1\n' >"$R/sbin/shutdown"
rm -f "$R/bin/shutdown"
chmod +x "$R/sbin/shutdown"
echo 'root:x:0:0:root:/:/bin/sh' >"$R/etc/passwd"
cat >"$R/init" <<'INIT'
#!/bin/sh
# PID 1 of the lab guest. Mounts the data disks, starts qemu-ga, powers off when asked.
export PATH=/bin:/sbin:/usr/sbin
power_off() {
  echo "haven-guest: powering off (uptime $(cut -d" " -f1 /proc/uptime))"
  kill -KILL -1 2>/dev/null # every process but PID 1: qemu-ga, workloads, watchers
  sync
  # unmount so the ext4 disks are clean; a dying process may hold them for a moment
  for d in /data2 /data; do
    grep -q " $d " /proc/mounts || continue
    i=0; until umount $d 2>/dev/null || [ $i -ge 20 ]; do usleep 50000; i=$((i+1)); done
  done
  sync
  poweroff -f # reboot(POWER_OFF): ACPI S5, QEMU exits
}
# busybox's halt, poweroff and reboot signal PID 1 with USR1, USR2 and TERM: all power off
# (the domain's on_reboot is destroy anyway).
trap power_off USR1 USR2 TERM
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
[ -b /dev/vda ] && mount -t ext4 /dev/vda /data
[ -b /dev/vdb ] && mount -t ext4 /dev/vdb /data2
mkdir -p /dev/virtio-ports
for p in /sys/class/virtio-ports/*; do
  [ -f "$p/name" ] && ln -sf "/dev/$(basename "$p")" "/dev/virtio-ports/$(cat "$p/name")"
done
if ! grep -q haven.noagent /proc/cmdline; then
  /usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 \
    -t /run -f /run/qemu-ga.pid -d
fi
# The ACPI power button (virsh shutdown --mode acpi) is an input device named "Power
# Button"; it reports nothing but presses, so any event read from it means "power off".
if ! grep -q haven.nobutton /proc/cmdline; then
  for e in /sys/class/input/event*; do
    [ "$(cat "$e/device/name" 2>/dev/null)" = "Power Button" ] || continue
    (dd if="/dev/input/${e##*/}" of=/dev/null bs=24 count=1 2>/dev/null && kill -USR2 1) &
  done
fi
echo "haven-guest: ready"
# `wait` (unlike a foreground sleep) returns as soon as a trapped signal arrives
while true; do sleep 3600 & wait $!; done
INIT
chmod +x "$R/init"
find "$R" -exec touch -h -d "@$EPOCH" {} +
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --reproducible --quiet) |
  gzip -9 -n >"$OUT/initrd.gz"

# --- data disk template: 64 MiB ext4 with fixed UUID/hash seed so it is reproducible too
truncate -s 64M "$WORK/data.raw"
E2FSPROGS_FAKE_TIME=$EPOCH mkfs.ext4 -q -F -U 6b0c2a8e-0000-4000-8000-00000000da7a \
  -E hash_seed=6b0c2a8e-0000-4000-8000-00000000da7a,lazy_itable_init=0,lazy_journal_init=0 \
  -L data "$WORK/data.raw"
qemu-img convert -q -O qcow2 "$WORK/data.raw" "$OUT/data.qcow2"
sha256sum "$OUT/vmlinux" "$OUT/initrd.gz" | sed "s#$OUT/##" >"$OUT/SHA256SUMS"
echo "guest built in $OUT (kernel $KVER)"
