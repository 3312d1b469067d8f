#!/usr/bin/env bash
# Install everything the KVM lab and the libvirt site driver need on a fresh Debian 12
# machine, as root. Idempotent: a second run installs nothing and takes ~1 s.
#
# Contract: after this script, `lab/kvm/build-guest.sh` and `lab/kvm/up.sh` work, and
# `pip install -e .[libvirt]` can build libvirt-python (libvirt-dev + pkg-config + gcc).
set -euo pipefail

PKGS=(
  # QEMU under TCG (see shared/notes/kvm-lab.md: this host's KVM is PVM-only)
  qemu-system-x86 qemu-utils qemu-guest-agent
  # the tiny guest: busybox initramfs, ext4 data disks
  busybox-static cpio e2fsprogs xz-utils
  # libvirt without systemd, and what libvirt-python builds against
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config gcc
  # network namespaces and the veth link between the two sites
  iproute2
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  # Other processes (or a parallel CI step) may hold the dpkg lock: wait for it.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

# libvirt's QEMU driver refuses to start without its user, which only the (systemd-bound)
# libvirt-daemon-system package would create.
getent group kvm >/dev/null || groupadd --system kvm
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
  useradd --system --no-create-home --home-dir /var/lib/libvirt -g libvirt-qemu -G kvm \
    --shell /usr/sbin/nologin libvirt-qemu
echo "ci-setup: ok"
