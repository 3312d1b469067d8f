#!/bin/bash
# Stop what the OpenStack lab started (by PID file) and unmount its loop mounts.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/lab.py" down "$@"
