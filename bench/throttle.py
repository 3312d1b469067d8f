#!/usr/bin/env python3
"""Does the bandwidth cap hold? ``--limit 50MiB/s`` must hold within 10% over 30 s.

    .venv/bin/python bench/throttle.py [--limit 50MiB/s] [--seconds 30] [--threads 4]
                                       [--repo URL]   # default: a discarding sink

Several threads put pack-sized objects (a mix of 32 MiB packs and small index/lock
objects, like a backup) through the data mover's own wrapper,
``haven.datamover.backends.open_backend(url, limit=...)`` (or ``throttle(sink, rate)`` for
the default sink, which discards data so only the cap limits the rate). Reports the
average rate over the whole run and the min/max over 5 s windows; exits non-zero if the
average is off by more than 10%. Writes ``bench/results/<date>-throttle.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from haven.datamover.backends import ObjectInfo, ObjectNotFound, open_backend, parse_rate, throttle
from haven.datamover.backends.base import Backend

MiB = 1 << 20


class SinkBackend:
    """Accepts and discards puts (only the cap should limit the rate)."""

    def put(self, key: str, data: bytes | memoryview) -> None:
        pass

    def get(self, key: str) -> bytes:
        raise ObjectNotFound(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        raise ObjectNotFound(key)

    def stat(self, key: str) -> ObjectInfo:
        raise ObjectNotFound(key)

    def exists(self, key: str) -> bool:
        return False

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(())

    def delete(self, key: str) -> None:
        pass

    def describe(self) -> str:
        return "sink://"

    def close(self) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description="bandwidth cap check")
    ap.add_argument("--limit", default="50MiB/s")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--repo", default="", help="backend URL (default: discarding sink)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    rate = parse_rate(args.limit)
    backend: Backend = (
        open_backend(args.repo, limit=args.limit) if args.repo else throttle(SinkBackend(), rate)
    )
    pack = random.Random(1).randbytes(32 * MiB)
    small = pack[: 64 * 1024]
    events: list[tuple[float, int]] = []  # (completion time, bytes)
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds
    start = time.monotonic()

    def worker(n: int) -> None:
        rng = random.Random(n)
        i = 0
        while time.monotonic() < stop_at:
            data = pack if rng.random() < 0.8 else small
            backend.put(f"bench/t{n}/o{i}", data)
            with lock:
                events.append((time.monotonic(), len(data)))
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = max(e[0] for e in events)
    elapsed = end - start
    total = sum(e[1] for e in events)
    avg = total / elapsed
    windows = []
    w = 5.0
    t0 = start
    while t0 + w <= end:
        windows.append(sum(b for t, b in events if t0 < t <= t0 + w) / w)
        t0 += w
    err = avg / rate - 1
    doc = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "limit": args.limit,
        "limit_bytes_s": rate,
        "backend": backend.describe(),
        "threads": args.threads,
        "seconds": round(elapsed, 2),
        "bytes": total,
        "avg_mib_s": round(avg / MiB, 2),
        "error_pct": round(err * 100, 2),
        "window_5s_mib_s": [round(x / MiB, 1) for x in windows],
        "holds_within_10pct": abs(err) <= 0.10,
    }
    backend.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d')}-throttle.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return 0 if doc["holds_within_10pct"] else 1


if __name__ == "__main__":
    sys.exit(main())
