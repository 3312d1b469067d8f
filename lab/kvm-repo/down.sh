#!/usr/bin/env bash
# Stop the repository endpoint of lab/kvm-repo/up.sh (lab/swift/down.sh on its state
# directory: only the processes whose PID files it wrote). --wipe deletes its data too.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export HAVEN_SWIFT_STATE=${HAVEN_LAB_STATE:-/var/lib/haven-lab}/kvm-repo/swift
[[ -d $HAVEN_SWIFT_STATE ]] || exit 0
bash "$HERE/../swift/down.sh" "$@"
