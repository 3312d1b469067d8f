#!/usr/bin/env bash
# A disaster at one site: SIGKILL its QEMU guests and its libvirtd (by their PIDs, from the
# pid files libvirt and up.sh wrote), like a host losing power. `up.sh` brings the site's
# daemon back (definitions, pools and networks persist; guests come back shut off).
# Usage: kill-site.sh a|b
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${HAVEN_LAB_STATE:-/var/lib/haven-lab}/kvm
s=${1:-}
[[ $s == a || $s == b ]] || { echo "usage: $0 a|b" >&2; exit 2; }
d=$STATE/sites/$s
for f in "$d"/run/qemu/*.pid "$d/libvirtd.pid"; do
  [[ -f $f ]] || continue
  p=$(cat "$f")
  [[ $p =~ ^[0-9]+$ ]] && kill -KILL "$p" 2>/dev/null
  # wait until the process is gone so that callers observe the outage deterministically
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
done
echo "site $s killed"
