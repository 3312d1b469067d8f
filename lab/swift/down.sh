#!/usr/bin/env bash
# Stop the Swift all-in-one started by lab/swift/up.sh: only the processes whose PID files
# it wrote, then unmount and detach the loop device it created. Data stays in disk.img
# (pass --wipe to delete the whole state directory).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# State: $HAVEN_SWIFT_STATE, else $HAVEN_LAB_STATE/swift (scripts/dev.sh sets it), else lab/.state/swift
STATE="${HAVEN_SWIFT_STATE:-${HAVEN_LAB_STATE:-$REPO/lab/.state}/swift}"
RUN="$STATE/run"

pids=()
for svc in proxy-server object-server container-server account-server memcached; do
  pidf="$RUN/$svc.pid"
  [[ -f "$pidf" ]] || continue
  pid="$(cat "$pidf")"
  # Only a process that is still ours (command line names $STATE), never a reused PID.
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE"; then
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  fi
  rm -f "$pidf"
done
for _ in $(seq 100); do                      # up to 10 s for a clean exit, then KILL
  alive=()
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
  (( ${#alive[@]} )) || break
  sleep 0.1
done
for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true; done

# The storage is mounted only in the daemons' private mount namespace: it was unmounted when
# the last of them exited, and its loop device (auto-clear) detached. Detach it here only if
# it is still bound to our file and no longer in use (e.g. an up.sh that failed half-way).
if [[ -f "$RUN/loopdev" ]]; then
  dev="$(cat "$RUN/loopdev")"
  for _ in $(seq 20); do
    losetup -j "$STATE/disk.img" 2>/dev/null | grep -q "^$dev:" || break
    sleep 0.1
  done
  if losetup -j "$STATE/disk.img" 2>/dev/null | grep -q "^$dev:"; then
    losetup -d "$dev" 2>/dev/null || echo "[swift-lab] $dev still bound (in use elsewhere?)" >&2
  fi
  rm -f "$RUN/loopdev"
fi
if [[ "${1:-}" == "--wipe" ]]; then
  rm -rf "$STATE"
fi
echo "[swift-lab] down" >&2
