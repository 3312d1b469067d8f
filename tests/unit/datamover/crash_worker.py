"""Subprocess body for test_dm_crash.py: runs one backup or prune and can be SIGKILLed.

python crash_worker.py backup <repo_dir> <key_hex> <image> <volume> <limit_bytes_per_s>
python crash_worker.py prune  <repo_dir> <key_hex> <keep_last> <limit_bytes_per_s>
"""

from __future__ import annotations

import sys

from haven.datamover import FileSource, Repository, RetentionPolicy, backup_volume, prune
from haven.datamover.backends import LocalBackend, throttle


def main(argv: list[str]) -> None:
    op, repo_dir, key_hex = argv[:3]
    backend = throttle(LocalBackend(repo_dir, fsync=False), float(argv[-1]))
    repo = Repository.open(backend, master_key=bytes.fromhex(key_hex))
    if op == "backup":
        with FileSource(argv[3]) as src:
            backup_volume(repo, src, volume=argv[4], point_id=argv[3], workers=2)
    else:
        prune(repo, RetentionPolicy(keep_last=int(argv[3])), repack_threshold=0.9)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
