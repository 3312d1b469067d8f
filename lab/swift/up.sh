#!/usr/bin/env bash
# Bring up a real OpenStack Swift all-in-one (one replica) on 127.0.0.1 for Haven's tests.
#
#   lab/swift/up.sh            # idempotent; a second run only re-checks readiness
#   lab/swift/down.sh          # stops what up.sh started, unmounts and detaches
#
# Route (see shared notes, openstack-lab.md): Debian bookworm's python3-swift library is
# installed with apt (policy-rc.d keeps anything from auto-starting); the four daemons
# (proxy, account, container, object) and memcached are run by hand as root from a private
# config tree under $HAVEN_SWIFT_STATE, with storage on a loop-mounted ext4 file with
# user_xattr, mounted in a private mount namespace (start-in-ns.sh says why). Auth is tempauth; lab/swift/README.md says how to switch the proxy to Keystone.
# The proxy also serves the S3 API (Swift's s3api middleware, in front of tempauth): the
# access key is the tempauth user (test:tester), the secret its key, the region
# $HAVEN_SWIFT_S3_REGION (default haven-lab), path-style buckets on the same port.
#
# Output: $STATE/env (and the same as $STATE/swift.env): `export HAVEN_SWIFT_AUTH_URL=...`,
# _AUTH_VERSION, _USER, _KEY lines and HAVEN_S3_ENDPOINT, _REGION, _ACCESS_KEY,
# _SECRET_KEY; scripts/dev.sh sources $HAVEN_LAB_STATE/swift/env.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# State: $HAVEN_SWIFT_STATE, else $HAVEN_LAB_STATE/swift (scripts/dev.sh sets it), else lab/.state/swift
STATE="${HAVEN_SWIFT_STATE:-${HAVEN_LAB_STATE:-$REPO/lab/.state}/swift}"
PROXY_PORT="${HAVEN_SWIFT_PROXY_PORT:-18080}"
ACCOUNT_PORT="${HAVEN_SWIFT_ACCOUNT_PORT:-16012}"
CONTAINER_PORT="${HAVEN_SWIFT_CONTAINER_PORT:-16011}"
OBJECT_PORT="${HAVEN_SWIFT_OBJECT_PORT:-16010}"
MEMCACHED_PORT="${HAVEN_SWIFT_MEMCACHED_PORT:-11312}"
DISK_SIZE="${HAVEN_SWIFT_DISK_SIZE:-4G}"
S3_REGION="${HAVEN_SWIFT_S3_REGION:-haven-lab}"   # s3api's "location"; signed into every S3 request
# The proxy's address (the Swift and S3 endpoint); the storage daemons and memcached stay on
# 127.0.0.1. lab/kvm-repo runs this script inside site b's network namespace with the
# site's veth address, so that the endpoint is reachable only across the inter-site link.
BIND_IP="${HAVEN_SWIFT_BIND_IP:-127.0.0.1}"
PY=/usr/bin/python3          # Debian's interpreter: python3-swift lives in its dist-packages
ETC="$STATE/etc"
RUN="$STATE/run"
LOG="$STATE/log"
NODE="$STATE/srv/node"
DEV=d1
ENV_FILE="$STATE/swift.env"
T0=$(date +%s.%N)

log() { printf '[swift-lab] %s\n' "$*" >&2; }
elapsed() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$T0" "$(date +%s.%N)"; }

# A PID file counts only if that process is still ours: its command line names $STATE.
pid_alive() {
  [[ -f "$1" ]] || return 1
  local pid; pid="$(cat "$1")"
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE"
}

# ---------------------------------------------------------------- readiness probe
probe() {   # exit 0 when healthcheck + authenticated PUT/GET/DELETE of an object work and
            # the proxy runs s3api for the region the env file names
  [[ -f "$ENV_FILE" ]] || return 1
  # shellcheck disable=SC1090
  ( source "$ENV_FILE"; "$PY" - "$HAVEN_SWIFT_AUTH_URL" "$HAVEN_SWIFT_USER" "$HAVEN_SWIFT_KEY" "${HAVEN_S3_ENDPOINT:-}" "${HAVEN_S3_REGION:-}" "$S3_REGION" <<'PYEOF'
import json, sys, urllib.request, urllib.error
auth, user, key, s3_endpoint, s3_region, want_region = sys.argv[1:7]
base = auth.split("/auth/")[0]
def req(method, url, headers=None, data=None):
    r = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    with urllib.request.urlopen(r, timeout=3) as resp:
        return resp.status, resp.headers, resp.read()
try:
    st, _, body = req("GET", base + "/healthcheck")
    assert st == 200 and body == b"OK", body
    st, h, _ = req("GET", auth, {"X-Auth-User": user, "X-Auth-Key": key})
    tok, url = h["X-Auth-Token"], h["X-Storage-Url"]
    t = {"X-Auth-Token": tok}
    req("PUT", url + "/haven-lab-ready", t, b"")
    req("PUT", url + "/haven-lab-ready/probe", t, b"ready")
    st, _, body = req("GET", url + "/haven-lab-ready/probe", t)
    assert body == b"ready", body
    req("DELETE", url + "/haven-lab-ready/probe", t)
    # S3: the env file names this proxy and region, and the proxy loaded s3api (/info
    # lists loaded middleware); the S3 contract tests exercise it for real.
    assert s3_endpoint == base and s3_region == want_region, "env file without S3 settings"
    st, _, body = req("GET", base + "/info")
    assert "s3api" in json.loads(body), "s3api middleware not loaded"
except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
    print(f"not ready: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
PYEOF
  ) 2>"$RUN/probe.err"
}

wait_ready() {
  local deadline=$(( $(date +%s) + ${HAVEN_SWIFT_READY_TIMEOUT:-90} ))
  until probe; do
    if (( $(date +%s) > deadline )); then
      log "not ready after ${HAVEN_SWIFT_READY_TIMEOUT:-90}s: $(cat "$RUN/probe.err" 2>/dev/null)"
      log "logs: $LOG"; tail -n 20 "$LOG"/*.log >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

mkdir -p "$RUN" "$LOG" "$ETC" "$NODE/$DEV"

# ---------------------------------------------------------------- fast path (warm)
all_running=1
for svc in memcached account-server container-server object-server proxy-server; do
  pid_alive "$RUN/$svc.pid" || all_running=0
done
if (( all_running )) && probe; then
  log "already up (checked in $(elapsed)s); env: $ENV_FILE"
  grep -v KEY "$ENV_FILE"
  exit 0
fi

# ---------------------------------------------------------------- packages
if ! "$PY" -c 'import swift, keystonemiddleware' 2>/dev/null || ! command -v memcached >/dev/null; then
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  log "installing python3-swift, python3-keystonemiddleware, memcached (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    python3-swift python3-keystonemiddleware memcached >"$LOG/apt.log" 2>&1 \
    || { tail -n 30 "$LOG/apt.log" >&2; exit 1; }
fi

# ---------------------------------------------------------------- secrets (generated once)
[[ -f "$STATE/hash.secret" ]] || "$PY" -c 'import secrets; print(secrets.token_hex(16))' > "$STATE/hash.secret"
[[ -f "$STATE/tester.key" ]] || "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' > "$STATE/tester.key"
chmod 600 "$STATE/hash.secret" "$STATE/tester.key"
HASH="$(cat "$STATE/hash.secret")"
KEY="$(cat "$STATE/tester.key")"

# ---------------------------------------------------------------- configuration
cat > "$ETC/swift.conf" <<CONF
[swift-hash]
swift_hash_path_suffix = $HASH
swift_hash_path_prefix = haven-lab

[storage-policy:0]
name = Policy-0
default = yes
CONF

common_default() {  # $1 = port
  cat <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $1
workers = 0
devices = $NODE
mount_check = false
swift_dir = $ETC
log_name = $2
log_level = INFO
log_address = /nonexistent
CONF
}

{ common_default "$ACCOUNT_PORT" account-server; cat <<'CONF'

[pipeline:main]
pipeline = healthcheck account-server

[app:account-server]
use = egg:swift#account

[filter:healthcheck]
use = egg:swift#healthcheck
CONF
} > "$ETC/account-server.conf"

{ common_default "$CONTAINER_PORT" container-server; cat <<'CONF'

[pipeline:main]
pipeline = healthcheck container-server

[app:container-server]
use = egg:swift#container

[filter:healthcheck]
use = egg:swift#healthcheck
CONF
} > "$ETC/container-server.conf"

{ common_default "$OBJECT_PORT" object-server; cat <<'CONF'

[pipeline:main]
pipeline = healthcheck object-server

[app:object-server]
use = egg:swift#object

[filter:healthcheck]
use = egg:swift#healthcheck
CONF
} > "$ETC/object-server.conf"

{ common_default "$PROXY_PORT" proxy-server | grep -v -e '^devices' -e '^mount_check' \
    | sed "s/^bind_ip = .*/bind_ip = $BIND_IP/"; cat <<CONF

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:s3api]
use = egg:swift#s3api
location = $S3_REGION

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = $KEY .admin
storage_url_scheme = default

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
CONF
} > "$ETC/proxy-server.conf"
chmod 600 "$ETC/proxy-server.conf"

# Launcher: Swift reads swift.conf from /etc/swift unless told otherwise; point it at ours.
cat > "$ETC/launch.py" <<'PYEOF'
import sys
from swift.common import utils
utils.set_swift_dir(sys.argv[1])
from swift.common import constraints, storage_policy
storage_policy.reload_storage_policies()
constraints.reload_constraints()
if sys.argv[2] == "ring-builder":
    from swift.cli.ringbuilder import main
    sys.exit(main(sys.argv[2:]))
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(sys.argv[3], sys.argv[2], verbose=True))
PYEOF

# ---------------------------------------------------------------- rings (built once)
if [[ ! -f "$ETC/object.ring.gz" ]]; then
  for ring in account:$ACCOUNT_PORT container:$CONTAINER_PORT object:$OBJECT_PORT; do
    name=${ring%%:*}; port=${ring##*:}
    b="$ETC/$name.builder"
    rm -f "$b"
    "$PY" "$ETC/launch.py" "$ETC" ring-builder "$b" create 10 1 1 >/dev/null
    "$PY" "$ETC/launch.py" "$ETC" ring-builder "$b" add --region 1 --zone 1 --ip 127.0.0.1 --port "$port" --device "$DEV" --weight 100 >/dev/null
    "$PY" "$ETC/launch.py" "$ETC" ring-builder "$b" rebalance >/dev/null || [[ $? -eq 1 ]]
  done
  log "rings built"
fi

# ---------------------------------------------------------------- storage + daemons
# Anything half-running from an earlier attempt is stopped first (by its PID files only).
for svc in memcached account-server container-server object-server proxy-server; do
  if pid_alive "$RUN/$svc.pid"; then "$HERE/down.sh"; break; fi
done
for port in "$PROXY_PORT" "$ACCOUNT_PORT" "$CONTAINER_PORT" "$OBJECT_PORT" "$MEMCACHED_PORT"; do
  if ! "$PY" -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((sys.argv[2] if sys.argv[1] == sys.argv[3] else "127.0.0.1", int(sys.argv[1])))' "$port" "$BIND_IP" "$PROXY_PORT" 2>/dev/null; then
    log "port $port is taken by another process (another Swift lab state?); set HAVEN_SWIFT_*_PORT"
    exit 1
  fi
done
unshare --mount --propagation private \
  "$HERE/start-in-ns.sh" "$STATE" "$PY" "$MEMCACHED_PORT" "$DISK_SIZE"
log "daemons started (storage $STATE/disk.img on $(cat "$RUN/loopdev"), private mount namespace)"

cat > "$ENV_FILE" <<ENVEOF
# Generated by lab/swift/up.sh — a throwaway lab credential, not a secret of any real cloud.
export HAVEN_SWIFT_AUTH_URL=http://$BIND_IP:$PROXY_PORT/auth/v1.0
export HAVEN_SWIFT_AUTH_VERSION=1
export HAVEN_SWIFT_USER=test:tester
export HAVEN_SWIFT_KEY=$KEY
export HAVEN_S3_ENDPOINT=http://$BIND_IP:$PROXY_PORT
export HAVEN_S3_REGION=$S3_REGION
export HAVEN_S3_ACCESS_KEY=test:tester
export HAVEN_S3_SECRET_KEY=$KEY
ENVEOF
chmod 600 "$ENV_FILE"
cp -p "$ENV_FILE" "$STATE/env"

wait_ready
log "up in $(elapsed)s; env: $ENV_FILE"
grep -v KEY "$ENV_FILE"
