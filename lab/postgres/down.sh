#!/usr/bin/env bash
# Stop the private PostgreSQL started by up.sh (its own pid file), keep the data.
set -euo pipefail
STATE=${HAVEN_LAB_STATE:-/var/lib/haven-lab}/postgres
[ -f "$STATE/data/postmaster.pid" ] || { echo "postgres not running"; exit 0; }
BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")
su postgres -s /bin/sh -c "$BIN/pg_ctl -D '$STATE/data' -m fast -w stop"
