#!/usr/bin/env python3
"""Does a policy's ``bandwidth_limit`` hold through the engine? ``haven protect`` of a
group whose policy caps replication, on the file-backed fake driver.

    .venv/bin/python bench/engine_throttle.py [--limit 20MiB/s] [--size-mib 256]

Builds a private HAVEN_HOME under bench/work/engine-throttle: two file-backed fake sites,
a local repository, a policy with ``bandwidth_limit: LIMIT``, one server whose data disk
holds SIZE MiB of random (incompressible, non-deduplicating) data. Runs ``haven apply``
and ``haven protect --json`` as an operator would (the CLI, a separate process) and
reports two rates:

- ``achieved``: while data moved: the least-squares slope of the bytes of packs stored
  in the repository against the time each was completed (their mtimes in the local
  repository). This is what the cap governs; the bench exits non-zero if it is more than
  5% off.
- ``step``: the point's ``bytes_sent`` over the whole ``protect.backup`` step of the step
  log, which adds the step's fixed costs (the fake site's state file, ~2x the volume, is
  loaded and saved around the read; the repository is opened and locked).

Writes ``bench/results/<date>-engine-throttle.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from haven.datamover import encode_key_file, new_master_key
from haven.datamover.backends import parse_rate
from haven.domain.inventory import DiskSpec, NicSpec, ServerSpec
from haven.sites.fake.filebacked import FileFakeDriver

MiB = 1 << 20
HERE = Path(__file__).resolve().parent

SPEC = """\
apiVersion: haven/v1
sites:
  - {{name: a, driver: fake, uri: "file://{root}/site-a"}}
  - {{name: b, driver: fake, uri: "file://{root}/site-b"}}
repositories:
  - {{name: repo, url: "{root}/repo", key_file: "{root}/repo.key"}}
policies:
  - {{name: capped, rpo: 1h, bandwidth_limit: "{limit}", consistency: crash}}
groups:
  - {{name: bulk, source: a, target: b, policy: capped, repository: repo,
      members: [{{server: big, quiesce: none}}]}}
plans:
  - {{name: bulk, group: bulk, stages: [{{servers: [big]}}]}}
"""


def _haven(home: Path, *args: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env["HAVEN_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "haven.cli", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=3600)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"haven {' '.join(args)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def _slope(packs: list[tuple[float, int]]) -> float:
    """Bytes per second: the least-squares slope of bytes stored so far against the time
    each pack was completed (robust to one pack's write finishing early or late)."""
    times = [t for t, _ in packs]
    total, stored = 0, []
    for _, size in packs:
        total += size
        stored.append(total)
    mt, mb = sum(times) / len(times), sum(stored) / len(stored)
    cov = sum((t - mt) * (b - mb) for t, b in zip(times, stored, strict=True))
    var = sum((t - mt) ** 2 for t in times)
    return cov / var


def main() -> int:
    ap = argparse.ArgumentParser(description="bandwidth_limit through haven protect")
    ap.add_argument("--limit", default="20MiB/s")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    cap = parse_rate(args.limit)
    root = HERE / "work" / "engine-throttle"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "repo.key").write_text(encode_key_file(new_master_key()))
    spec = root / "spec.yaml"
    spec.write_text(SPEC.format(root=root, limit=args.limit))
    size = args.size_mib * MiB
    site = FileFakeDriver("a", root / "site-a")
    FileFakeDriver("b", root / "site-b")
    sid = site.add_server(
        ServerSpec("big", 1, 128, (DiskSpec("vda", size, format="raw"),), (NicSpec("app-net"),))
    )
    site.write_disk(sid, "vda", 0, os.urandom(size))
    home = root / "home"
    _haven(home, "apply", "-f", str(spec))
    op = _haven(home, "protect", "bulk")
    steps = op["steps"]
    assert isinstance(steps, list)
    backup = next(s for s in steps if str(s["name"]).startswith("protect.backup"))
    took = (
        dt.datetime.fromisoformat(str(backup["finished_at"]))
        - dt.datetime.fromisoformat(str(backup["started_at"]))
    ).total_seconds()
    result = op["result"]
    assert isinstance(result, dict)
    sent = int(result["bytes_sent"])
    packs = sorted(
        (f.stat().st_mtime, f.stat().st_size)
        for f in (root / "repo" / "data").rglob("*")
        if f.is_file()
    )
    rate = _slope(packs)
    err = rate / cap - 1
    doc = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"haven protect bulk (policy bandwidth_limit {args.limit})",
        "limit": args.limit,
        "limit_bytes_s": cap,
        "volume_mib": args.size_mib,
        "bytes_sent": sent,
        "packs": len(packs),
        "achieved_mib_s": round(rate / MiB, 2),
        "step_mib_s": round(sent / took / MiB, 2),
        "backup_step_s": round(took, 2),
        "protect_s": float(result["duration_s"]),
        "error_pct": round(err * 100, 2),
        "within_5pct": abs(err) <= 0.05,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d')}-engine-throttle.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    if os.environ.get("KEEP"):
        print(packs)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if doc["within_5pct"] else 1


if __name__ == "__main__":
    sys.exit(main())
