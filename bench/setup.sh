#!/usr/bin/env bash
# Install what the benchmark compares against (Debian packages) and the helpers it uses.
set -euo pipefail
need=()
for pkg in restic borgbackup e2fsprogs util-linux; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if (( ${#need[@]} )); then
  [[ -x /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
restic version
borg --version
