#!/usr/bin/env bash
# Haven's one entry point for developers and CI, on a fresh Debian machine as root.
#
#   bash scripts/dev.sh demo    set up, then run Haven's main job (haven demo)
#   bash scripts/dev.sh test    set up, start the labs, run lint, types, layers and tests
#                               (all of them, the OpenStack lab's included)
#   bash scripts/dev.sh test-openstack   bring up the two-region OpenStack lab and run
#                               only the tests marked `openstack`
#   bash scripts/dev.sh setup   only install what is needed (idempotent)
#   bash scripts/dev.sh down    stop every lab this script started
#
# Everything it installs comes from Debian's packages and PyPI; labs keep their state
# under $HAVEN_LAB_STATE (default /var/lib/haven-lab) and are stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${HAVEN_VENV:-$ROOT/.venv}
export HAVEN_LAB_STATE=${HAVEN_LAB_STATE:-/var/lib/haven-lab}
export DEBIAN_FRONTEND=noninteractive
APT_PACKAGES=(python3 python3-venv python3-dev gcc pkg-config libvirt-dev)
APT_UPDATED=0

log() { printf '\n==> %s\n' "$*" >&2; }

need_apt() {  # install the Debian packages named, if any is missing
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ ! -x /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
  [ "$APT_UPDATED" = 1 ] || { apt-get -o DPkg::Lock::Timeout=900 update -qq; APT_UPDATED=1; }
  log "apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_python() {
  need_apt "${APT_PACKAGES[@]}"
  local py=python3
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$py" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
  log "installing haven-dr with its test extras"
  "$VENV/bin/pip" install -q -e ".[$(extras)]"
}

extras() {  # every extra defined in pyproject.toml's optional-dependencies
  "$VENV/bin/python" - <<'PY'
import tomllib
print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {})))
PY
}

labs_up() {
  for lab in postgres $(lab_list); do
    log "lab $lab: up"
    start=$(date +%s)
    bash "lab/$lab/up.sh"
    echo "lab $lab up in $(( $(date +%s) - start ))s" >&2
    [ -f "$HAVEN_LAB_STATE/$lab/env" ] && source "$HAVEN_LAB_STATE/$lab/env"
  done
  return 0
}

lab_list() { [ -f lab/ci-labs ] && grep -v '^#' lab/ci-labs || true; }

labs_down() {
  for lab in $(lab_list | tac) postgres; do
    [ -x "lab/$lab/down.sh" ] || [ -f "lab/$lab/down.sh" ] || continue
    bash "lab/$lab/down.sh" || echo "warning: lab $lab did not stop cleanly" >&2
  done
}

OS_PID=""
OS_LOG="$HAVEN_LAB_STATE/openstack-up.log"
openstack_up_bg() {
  mkdir -p "$HAVEN_LAB_STATE"
  log "lab openstack: starting in the background (log: $OS_LOG)"
  OS_START=$(date +%s)
  bash lab/openstack/up.sh >"$OS_LOG" 2>&1 &
  OS_PID=$!
}

identity_wait() {  # the background full up writes identity.env once Keystone is ready
  local f="$HAVEN_LAB_STATE/openstack/identity.env"
  log "lab openstack: waiting for its Keystone (identity.env)"
  while [ ! -f "$f" ]; do
    if ! kill -0 "$OS_PID" 2>/dev/null; then
      tail -n 40 "$OS_LOG" >&2
      echo "lab openstack stopped before its Keystone was ready (log above: $OS_LOG)" >&2
      return 1
    fi
    sleep 1  # polling a file the lab writes when ready, not a readiness guess
  done
  echo "lab openstack: Keystone ready $(( $(date +%s) - OS_START ))s after start" >&2
  source "$f"
}

openstack_wait() {
  log "lab openstack: waiting for it to answer"
  if ! wait "$OS_PID"; then
    tail -n 40 "$OS_LOG" >&2
    echo "lab openstack did not come up (log above: $OS_LOG)" >&2
    return 1
  fi
  echo "lab openstack up in $(( $(date +%s) - OS_START ))s (started in the background)" >&2
  source "$HAVEN_LAB_STATE/openstack/env"
}

openstack_down() {
  [ -f lab/openstack/down.sh ] || return 0
  if [ -n "$OS_PID" ] && kill -0 "$OS_PID" 2>/dev/null; then kill "$OS_PID" 2>/dev/null || true; wait "$OS_PID" 2>/dev/null || true; fi
  bash lab/openstack/down.sh >/dev/null 2>&1 || echo "warning: lab openstack did not stop cleanly" >&2
  OS_PID=""
}

checks() {
  log "ruff"
  "$VENV/bin/ruff" check src tests bench
  "$VENV/bin/ruff" format --check src tests bench
  log "mypy (strict on haven.domain, haven.datamover, haven.keystores, haven.api, haven.osc)"
  "$VENV/bin/mypy" --strict src/haven/domain src/haven/datamover src/haven/keystores src/haven/api src/haven/osc
  log "import-linter (layers)"
  "$VENV/bin/lint-imports"
  log "vulture (dead code; framework-used names in scripts/vulture_whitelist.py)"
  "$VENV/bin/vulture" src tests bench scripts/vulture_whitelist.py --min-confidence 60
}

run_tests() {
  log "pytest"
  set +e
  "$VENV/bin/pytest" "$@"
  local rc=$?
  set -e
  if [ $rc -eq 5 ]; then
    # a phase with nothing to run is a broken suite, unless the caller narrowed it
    [ -n "${USER_ARGS:-}" ] && { echo "(nothing selected in this phase)" >&2; return 0; }
    echo "pytest collected no tests: failing" >&2; return 1
  fi
  return $rc
}

case "${1:-}" in
  setup) setup_python ;;
  test)
    shift
    USER_ARGS="$*"
    setup_python
    trap 'openstack_down; labs_down' EXIT
    # The OpenStack lab takes minutes to come up (apt, database syncs, 45 daemons): it
    # starts first, in the background, while the other labs start and the tests that need
    # no OpenStack run. Its tests run once it answers; then it stops, freeing CPU and
    # ~6 GB, before the KVM tests (whose freeze-window checks want a quiet machine).
    openstack_up_bg
    labs_up
    checks
    identity_wait
    log "pytest, phase 1 of 3: everything that needs neither OpenStack nor KVM guests (Keystone-only tests included)"
    run_tests -m "not openstack and not kvm" "$@"
    openstack_wait
    log "pytest, phase 2 of 3: the OpenStack lab"
    run_tests -m openstack "$@"
    openstack_down
    log "pytest, phase 3 of 3: KVM guests"
    run_tests -m "kvm and not openstack" "$@"
    ;;
  test-openstack)
    shift
    setup_python
    trap 'bash lab/openstack/down.sh' EXIT
    log "lab openstack: up (two regions)"
    bash lab/openstack/up.sh
    source "$HAVEN_LAB_STATE/openstack/env"
    run_tests -m openstack "$@"
    ;;
  demo)
    shift
    setup_python
    log "lab kvm: up (two libvirt sites)"
    bash lab/kvm/up.sh
    source "$HAVEN_LAB_STATE/kvm/env"
    "$VENV/bin/haven" demo "$@"
    ;;
  down) labs_down ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
