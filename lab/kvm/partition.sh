#!/usr/bin/env bash
# Cut or heal the link between the two sites: partition.sh cut|heal
set -euo pipefail
case ${1:-} in
  cut) ip netns exec haven-a ip link set haven-a0 down ;;
  heal) ip netns exec haven-a ip link set haven-a0 up ;;
  *) echo "usage: $0 cut|heal" >&2; exit 2 ;;
esac
