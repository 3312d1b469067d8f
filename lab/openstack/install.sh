#!/bin/bash
# Install the OpenStack lab's software (Debian bookworm, OpenStack Zed packages).
# Libraries and infrastructure via apt-get install (nothing auto-starts: policy-rc.d);
# service packages only downloaded and unpacked into a private root (no postinst,
# no dbconfig, no systemd) for their console scripts and config templates.
# Idempotent: a marker file records a finished install.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${HAVEN_OS_STATE:-}" ]; then STATE="$HAVEN_OS_STATE"
elif [ -n "${HAVEN_LAB_STATE:-}" ]; then STATE="$HAVEN_LAB_STATE/openstack"
else STATE="$HERE/../.state/openstack"; fi
ROOT="$STATE/root"
MARK="$ROOT/.installed-v2"  # v2: Barbican
[ -f "$MARK" ] && exit 0
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$ROOT" "$STATE/debs"
if [ ! -x /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
fi
LIBS="python3-keystone python3-glance python3-cinder python3-nova python3-neutron
  python3-placement python3-swift python3-barbican python3-openstackclient python3-pymysql
  uwsgi-core uwsgi-plugin-python3 rabbitmq-server mariadb-server memcached
  qemu-utils dmidecode e2fsprogs"
missing=""
for p in $LIBS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get -o DPkg::Lock::Timeout=900 update -qq || true
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $missing
fi
SVC="keystone glance-api glance-common cinder-api cinder-scheduler cinder-volume cinder-backup
  cinder-common nova-api nova-conductor nova-scheduler nova-compute nova-common placement-api
  placement-common neutron-server neutron-common neutron-rpc-server swift-proxy swift-account
  swift-container swift-object swift barbican-common"
cd "$STATE/debs"
need=""
for p in $SVC; do ls "${p}"_*.deb >/dev/null 2>&1 || need="$need $p"; done
[ -n "$need" ] && apt-get download -qq $need
for d in *.deb; do dpkg-deb -x "$d" "$ROOT"; done
touch "$MARK"
