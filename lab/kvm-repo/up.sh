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
HAVEN_SWIFT_BIND_IP=10.231.0.2 HAVEN_SWIFT_DISK_SIZE=${HAVEN_KVM_REPO_DISK_SIZE:-2G} \
  ip netns exec haven-b bash "$HERE/../swift/up.sh"
