#!/bin/bash
# Bring the two-region OpenStack lab up (installs on first run). Idempotent.
# State (configs, data, logs, PID files, clouds.yaml): lab/.state/openstack
# (override with HAVEN_OS_STATE; with HAVEN_LAB_STATE set: $HAVEN_LAB_STATE/openstack).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/lab.py" up "$@"
