"""Self-measurement of the data mover (not a test; not collected by pytest).

    .venv/bin/python tests/unit/datamover/perf_datamover.py IMAGE [--repo DIR] [--out FILE]

Backs up IMAGE into a fresh key-file repository (full, then re-read, then an incremental
with a synthetic changed-extent list), restores it to a fresh file and into that file
again (nothing differs), and prints wall/CPU seconds, MB/s and peak RSS. Repositories
and outputs on tmpfs (/dev/shm) measure the data mover rather than the disk. The
benchmark against restic/borg lives in bench/.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time

from haven.datamover import (
    FileSource,
    Repository,
    backup_volume,
    new_master_key,
    restore_volume,
)
from haven.datamover.backends import LocalBackend
from haven.domain.extents import Extent


def _line(label: str, wall: float, cpu: float, nbytes: int) -> None:
    print(f"{label:<34} wall {wall:6.2f}s  cpu {cpu:6.2f}s  {nbytes / wall / 1e6:7.0f} MB/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("--repo", default="/dev/shm/haven-perf-repo")
    ap.add_argument("--out", default="/dev/shm/haven-perf-out")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    shutil.rmtree(args.repo, ignore_errors=True)
    repo = Repository.init(LocalBackend(args.repo), master_key=new_master_key())

    def timed(label: str, nbytes_of: object, fn: object) -> object:
        w, c = time.perf_counter(), time.process_time()
        result = fn()  # type: ignore[operator]
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        _line(label, wall, cpu, nbytes_of(result))  # type: ignore[operator]
        return result

    def backup(**kw: object) -> object:
        with FileSource(args.image) as src:
            return backup_volume(repo, src, volume="perf", workers=args.workers, **kw)  # type: ignore[arg-type]

    full = timed("full backup (logical size)", lambda r: r.stats.size, backup)
    print(
        f"  read {full.stats.bytes_read / 1e6:.0f} MB, uploaded "  # type: ignore[attr-defined]
        f"{full.stats.bytes_uploaded / 1e6:.0f} MB"
    )  # type: ignore[attr-defined]
    timed("re-read backup, no CBT", lambda r: r.stats.size, backup)
    size = full.manifest.size  # type: ignore[attr-defined]
    changed = [Extent(off, 65536) for off in range(0, size - 65536, size // 40)]
    timed(
        "incremental, 40 changed extents",
        lambda r: r.stats.size,
        lambda: backup(parent=full.manifest, changed=changed),
    )  # type: ignore[attr-defined]
    timed(
        "restore to new file",
        lambda r: r.size,
        lambda: restore_volume(repo, full.manifest, args.out, workers=args.workers),
    )  # type: ignore[attr-defined]
    timed(
        "restore into existing (same)",
        lambda r: r.size,
        lambda: restore_volume(
            repo,
            full.manifest,
            args.out,
            into_existing=True,  # type: ignore[attr-defined]
            workers=args.workers,
        ),
    )
    print(
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    shutil.rmtree(args.repo, ignore_errors=True)
    os.unlink(args.out)


if __name__ == "__main__":
    main()
