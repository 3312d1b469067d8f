#!/usr/bin/env bash
# Stop what up.sh started, by PID only: each site's QEMU processes (their pid files under the
# site's run dir), then its libvirtd, then the namespaces and the veth link. Keeps images and
# the built guest; `down.sh --purge` also removes $STATE/sites.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${HAVEN_LAB_STATE:-/var/lib/haven-lab}/kvm

stop_pid() { # pidfile
  local f=$1 p i
  [[ -f $f ]] || return 0
  p=$(cat "$f")
  if [[ $p =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p"
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p"
  fi
  rm -f "$f"
}

for s in a b; do
  d=$STATE/sites/$s
  [[ -d $d ]] || continue
  # QEMU guests first (libvirt writes <run>/qemu/<name>.pid), so none outlives its daemon.
  for f in "$d"/run/qemu/*.pid; do [[ -e $f ]] && stop_pid "$f"; done
  stop_pid "$d/libvirtd.pid"
done
for s in a b; do ip netns list | grep -qw "haven-$s" && ip netns del "haven-$s"; done
[[ ${1:-} == --purge ]] && rm -rf "$STATE/sites"
echo "lab down"
