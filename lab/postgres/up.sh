#!/usr/bin/env bash
# Start a private PostgreSQL for Haven's catalog tests (idempotent).
# Installs Debian's postgresql if missing, keeps its data under $STATE, listens on
# 127.0.0.1:$PGPORT only, and writes $STATE/env with HAVEN_TEST_PG_URL.
set -euo pipefail
STATE=${HAVEN_LAB_STATE:-/var/lib/haven-lab}/postgres
PGPORT=${HAVEN_PG_PORT:-5432}
export DEBIAN_FRONTEND=noninteractive

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  [ -x /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends postgresql >/dev/null
fi
BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")
id postgres >/dev/null 2>&1 || useradd --system --home "$STATE" postgres

mkdir -p "$STATE"
chown postgres "$STATE"
if [ ! -f "$STATE/data/PG_VERSION" ]; then
  su postgres -s /bin/sh -c "$BIN/initdb -D '$STATE/data' -U postgres --auth=trust -E UTF8 >'$STATE/initdb.log'"
fi
if ! su postgres -s /bin/sh -c "$BIN/pg_ctl -D '$STATE/data' status" >/dev/null 2>&1; then
  su postgres -s /bin/sh -c "$BIN/pg_ctl -D '$STATE/data' -l '$STATE/server.log' -w -t 60 \
    -o \"-c listen_addresses=127.0.0.1 -p $PGPORT -k '$STATE'\" start" >/dev/null
fi
# -w above waits until the server accepts connections; confirm with a real query.
su postgres -s /bin/sh -c "$BIN/psql -h 127.0.0.1 -p $PGPORT -U postgres -Atc 'select 1'" >/dev/null
echo "export HAVEN_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$PGPORT/postgres" > "$STATE/env"
echo "postgres up: $(cat "$STATE/env")"
