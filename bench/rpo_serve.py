"""RPO held by ``haven serve`` on the demo app while it writes (KVM lab, run as root).

    .venv/bin/python bench/rpo_serve.py --minutes 10

Sets up the demo's three guests at site A (haven demo's preparation), starts a writer in
every guest (a record a second, synced), runs the scheduler (policy: RPO 60 s, interval
30 s) and samples the age of the newest committed point every second. Reports the worst
age seen (the achieved RPO), points taken, their freeze windows and durations, and writes
bench/results/rpo_serve.json.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from haven.catalog.db import haven_home
from haven.engine import resolve, scheduler
from haven_lab import kvm
from haven_lab.demo import scenario
from haven_lab.demo.spec import SERVERS


def writer(stop: threading.Event, counts: dict[str, int]) -> None:
    drv = resolve.driver("site-a")
    ids = {s: drv.get_server(s).id for s in SERVERS}
    while not stop.is_set():
        for name, sid in ids.items():
            try:
                drv.guest_exec(sid, ["sh", "-c", f"echo w-{time.time()} >> /data/w; sync"], 30)
                counts[name] = counts.get(name, 0) + 1
            except Exception:
                pass  # frozen for a point: the next write goes through after the thaw
        stop.wait(1.0)  # the workload's own pace: one record per guest per second


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    home = haven_home() / "bench-rpo"
    scenario.prepare(home, print)
    stop = threading.Event()
    counts: dict[str, int] = {}
    w = threading.Thread(target=writer, args=(stop, counts), daemon=True)
    w.start()
    worst = 0.0
    samples = 0
    serve_stop = threading.Event()
    srv = threading.Thread(target=scheduler.serve, args=(serve_stop,), daemon=True)
    srv.start()
    first_point: float | None = None
    end = time.monotonic() + args.minutes * 60
    while time.monotonic() < end:
        pts = resolve.committed_points("shop")
        if pts:
            age = (datetime.now(UTC) - pts[-1].created_at).total_seconds()
            if first_point is None:
                first_point = time.monotonic()
            worst = max(worst, age)
            samples += 1
        stop.wait(1.0)  # sampling period
    serve_stop.set()
    srv.join(120)
    stop.set()
    w.join(60)
    pts = resolve.committed_points("shop")
    every = [p for p in resolve.committed_points("shop")]
    result = {
        "minutes": args.minutes,
        "rpo_target_s": 60,
        "worst_point_age_s": round(worst, 1),
        "held": worst <= 60,
        "samples": samples,
        "points_kept": len(pts),
        "freeze_window_ms_max": max((p.stats.freeze_window_ms or 0) for p in every),
        "point_duration_s_max": max(p.stats.duration_seconds for p in every),
        "writes": counts,
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / "rpo_serve.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for site in ("site-a", "site-b"):
        for prefix in ("demo-", "shop-demo-"):
            kvm.remove_prefixed(resolve.driver(site), prefix)


if __name__ == "__main__":
    main()
