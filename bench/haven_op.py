#!/usr/bin/env python3
"""One Haven data-mover operation, run as a child process by bench/run.py so that it is
measured exactly like restic and borg (wall time, user+sys CPU, peak RSS of the process).

    haven_op.py init    REPO
    haven_op.py backup  REPO IMAGE VOLUME OUT.json [--parent MANIFEST] [--changed EXTENTS.json]
    haven_op.py restore REPO MANIFEST TARGET OUT.json

Uses only the public API of :mod:`haven.datamover`. The password comes from
HAVEN_BENCH_PASSWORD (the same one restic and borg get).
"""

from __future__ import annotations

import json
import os
import sys
import time


def _since_process_start() -> float:
    """Seconds since this process was started (interpreter start-up included)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


_T0 = time.monotonic()
_STARTED = _since_process_start()

from haven.datamover import (  # noqa: E402  (timed: imports are part of the cost)
    FileSource,
    Repository,
    backup_volume,
    open_backend,
    restore_volume,
)
from haven.domain.extents import Extent  # noqa: E402

_IMPORTED = time.monotonic()


def main(argv: list[str]) -> int:
    password = os.environ.get("HAVEN_BENCH_PASSWORD", "bench")
    op = argv[0]
    backend = open_backend(argv[1])
    if op == "init":
        Repository.init(backend, password=password)
        return 0
    # backup_volume and restore_volume load the chunk index themselves, under their lock
    repo = Repository.open(backend, password=password, load_index=False)
    opened = time.monotonic()
    if op == "backup":
        image, volume, out = argv[2], argv[3], argv[4]
        rest = argv[5:]
        parent = rest[rest.index("--parent") + 1] if "--parent" in rest else None
        changed = None
        if "--changed" in rest:
            with open(rest[rest.index("--changed") + 1]) as f:
                changed = [Extent(o, n) for o, n in json.load(f)]
        with FileSource(image) as src:
            res = backup_volume(repo, src, volume=volume, parent=parent, changed=changed)
        s = res.stats
        doc = {
            "manifest_id": res.manifest.manifest_id,
            "bytes_read": s.bytes_read,
            "bytes_new": s.bytes_new,
            "bytes_uploaded": s.bytes_uploaded,
            "chunks_total": s.chunks_total,
            "chunks_read": s.chunks_read,
            "chunks_zero": s.chunks_zero,
            "chunks_from_parent": s.chunks_from_parent,
            "elapsed": s.elapsed,
        }
    elif op == "restore":
        manifest, target, out = argv[2], argv[3], argv[4]
        r = restore_volume(repo, manifest, target)
        doc = {
            "bytes_fetched": r.bytes_fetched,
            "bytes_written": r.bytes_written,
            "chunks_zeroed": r.chunks_zeroed,
            "verified": r.verified,
            "elapsed": r.elapsed,
        }
    else:
        print(f"unknown op {op}", file=sys.stderr)
        return 2
    # where the time outside the operation goes (process start to here, in seconds)
    doc["phases"] = {
        "start_to_imports": round(_STARTED, 3),
        "imports": round(_IMPORTED - _T0, 3),
        "open_and_kdf": round(opened - _IMPORTED, 3),
    }
    with open(out, "w") as f:
        json.dump(doc, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
