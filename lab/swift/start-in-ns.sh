#!/usr/bin/env bash
# Called by up.sh inside `unshare --mount --propagation private`: mounts the storage file and
# starts the daemons in that private mount namespace. The mount is then invisible to every
# other namespace (other labs' libvirtd/QEMU namespaces would otherwise keep a copy of it
# alive after down.sh), and it goes away by itself when the last daemon exits; the loop
# device is set to auto-clear at that moment.
set -euo pipefail
STATE=$1 PY=$2 MEMCACHED_PORT=$3 DISK_SIZE=$4
ETC="$STATE/etc" RUN="$STATE/run" LOG="$STATE/log" NODE="$STATE/srv/node/d1"
img="$STATE/disk.img"
if [[ ! -f "$img" ]]; then
  truncate -s "$DISK_SIZE" "$img"
  mkfs.ext4 -q -F "$img"
fi
dev="$(losetup -j "$img" | head -n1 | cut -d: -f1)"   # reuse a device still bound to it
[[ -n "$dev" ]] || dev="$(losetup -f --show "$img")"
echo "$dev" > "$RUN/loopdev"
mount -o user_xattr,noatime "$dev" "$NODE"
losetup -d "$dev" 2>/dev/null || true                   # busy: becomes auto-clear
mountpoint -q "$NODE"

start() {  # $1 name, rest = command
  local name=$1; shift
  setsid "$@" >>"$LOG/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}
# argv[0] names the state dir, so that up.sh/down.sh recognise their own memcached.
start memcached bash -c 'exec -a "memcached[haven-lab $1]" memcached -u root -l 127.0.0.1 -p "$2" -U 0 -m 64' \
  _ "$STATE" "$MEMCACHED_PORT"
for svc in account-server container-server object-server proxy-server; do
  start "$svc" "$PY" "$ETC/launch.py" "$ETC" "$svc" "$ETC/$svc.conf"
done
