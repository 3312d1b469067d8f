#!/usr/bin/env bash
# A repository endpoint at site b of the KVM lab: Swift (with its S3 API) inside site b's
# network namespace, the proxy bound to site b's veth address, so that a Haven running in
# site a's namespace reaches its repository only across the inter-site link (the link's
# byte counters then show every byte Haven exchanges with its repository).
#
#   bash lab/kvm-repo/up.sh     # idempotent; needs the KVM lab (lab/kvm/up.sh) up
#   bash lab/kvm-repo/down.sh   # stops only what this started
#
# It is lab/swift/up.sh run with `ip netns exec haven-b`, its own state directory
# ($HAVEN_LAB_STATE/kvm-repo/swift) and HAVEN_SWIFT_BIND_IP=10.231.0.2; its settings are in
# $HAVEN_LAB_STATE/kvm-repo/swift/swift.env (HAVEN_S3_ENDPOINT=http://10.231.0.2:18080,
# ...). Deliberately no $HAVEN_LAB_STATE/kvm-repo/env: scripts/dev.sh sources each lab's
# env, and these HAVEN_S3_* values must not replace the Swift lab's for the other tests.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=${HAVEN_LAB_STATE:-/var/lib/haven-lab}
export HAVEN_SWIFT_STATE=$LAB/kvm-repo/swift
mkdir -p "$HAVEN_SWIFT_STATE"
if ! ip netns exec haven-b ip -4 addr show dev haven-b0 2>/dev/null | grep -q "10.231.0.2/"; then
  echo "[kvm-repo] the KVM lab's site b (namespace haven-b, veth 10.231.0.2) is not up: run lab/kvm/up.sh" >&2
  exit 1
fi
# Packages first, from the host's namespace (site b's has no route to a package mirror):
# the same ones lab/swift/up.sh installs, with nothing allowed to auto-start.
if ! /usr/bin/python3 -c 'import swift, keystonemiddleware' 2>/dev/null || ! command -v memcached >/dev/null; then
  [[ -e /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    python3-swift python3-keystonemiddleware memcached >/dev/null
fi
HAVEN_SWIFT_BIND_IP=10.231.0.2 HAVEN_SWIFT_DISK_SIZE=${HAVEN_KVM_REPO_DISK_SIZE:-2G} \
  ip netns exec haven-b bash "$HERE/../swift/up.sh"
