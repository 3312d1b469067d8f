#!/usr/bin/env python3
"""Build the benchmark's volume images (root; needs mkfs.ext4 and loop devices).

    python3 bench/make_image.py [--work bench/work] [--size-mib 2048] [--seed 42]

Writes into ``--work``:
- ``base.img``: a 2 GiB ext4 image, about 60% used: text files (seeded pseudo-English,
  compressible), copies of files from /usr/lib and /usr/share (binaries, libraries,
  data; walked in sorted order) and random data (incompressible); the rest is empty
  (holes in the sparse image file).
- ``changed.img``: a copy in which about 2% of the 64 KiB blocks differ: some files are
  rewritten in place, others appended to, a few new files are created, some deleted
  (done through a loop mount, in a private mount namespace, so ext4's own metadata and
  journal writes are part of the change, as with a real guest).
- ``changed-extents.json``: the blocks that differ, found by comparing the two images at
  64 KiB granularity, as ``[[offset, length], ...]`` in bytes (merged runs) - what a
  changed-block tracker (QEMU dirty bitmap) would report.
- ``images.json``: sizes, used fraction, changed fraction, seed.

Reproducible for a given seed on a given machine: the generated parts are seeded, mkfs
gets a fixed UUID, hash seed and time; the /usr copies depend on what is installed.
Re-running with the same arguments reuses existing images (``--force`` rebuilds).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
BLOCK = 64 * 1024
UUID = "5a1e0f00-4a7e-4b00-8d00-0000000000a1"
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "volume",
    "backup",
    "restore",
    "cloud",
    "server",
    "network",
    "storage",
    "replica",
    "recovery",
    "point",
    "policy",
    "schedule",
    "failover",
    "failback",
    "kernel",
    "block",
    "chunk",
    "extent",
    "manifest",
    "snapshot",
    "openstack",
    "swift",
    "cinder",
    "nova",
    "glance",
    "neutron",
    "keystone",
    "libvirt",
    "qemu",
    "guest",
    "agent",
    "quiesce",
    "freeze",
    "thaw",
    "journal",
    "inode",
    "ext4",
    "xfs",
    "error",
    "warning",
    "info",
    "debug",
    "request",
    "response",
    "latency",
    "throughput",
    "bandwidth",
    "token",
    "bucket",
    "customer",
    "invoice",
    "order",
    "product",
    "price",
    "quantity",
    "total",
    "date",
    "name",
    "address",
    "city",
    "country",
]


def log(msg: str) -> None:
    print(f"[make_image] {msg}", file=sys.stderr, flush=True)


def write_text(path: Path, size: int, rng: random.Random) -> None:
    """Log-like / prose-like text, compressible about 3-4x with zstd -1."""
    lines: list[str] = []
    n = 0
    while n < size:
        kind = rng.random()
        if kind < 0.5:
            line = (
                f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z "
                f"{rng.choice(['INFO', 'WARN', 'DEBUG', 'ERROR'])} "
                f"req-{rng.getrandbits(64):016x} "
                + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 18)))
                + f" took={rng.randint(1, 9999)}ms"
            )
        else:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))).capitalize()
        lines.append(line)
        n += len(line) + 1
    path.write_text("\n".join(lines) + "\n")


def write_random(path: Path, size: int, rng: random.Random) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(rng.randbytes(n))
            left -= n


def copy_usr(dest: Path, budget: int) -> int:
    """Copy regular files from /usr/lib and /usr/share (sorted walk) up to ``budget``."""
    copied = 0
    for root in ("/usr/lib", "/usr/share"):
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                src = Path(dirpath) / name
                try:
                    st = src.lstat()
                except OSError:
                    continue
                if not src.is_file() or src.is_symlink() or st.st_size == 0:
                    continue
                if st.st_size > 64 * MiB or copied + st.st_size > budget:
                    continue
                target = dest / src.relative_to("/usr")
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(src, target)
                except OSError:
                    continue
                copied += st.st_size
                if copied >= budget * 0.995:
                    return copied
    return copied


def populate(tree: Path, size: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    target = int(size * 0.60)
    # Shares of the used space: text 30%, /usr copies 35%, random 35%.
    text_budget, usr_budget = int(target * 0.30), int(target * 0.35)
    rand_budget = target - text_budget - usr_budget
    stats = {"text": 0, "usr": 0, "random": 0}
    d = tree / "var" / "log" / "app"
    d.mkdir(parents=True)
    i = 0
    while stats["text"] < text_budget:
        n = min(text_budget - stats["text"], rng.choice([8 * 1024, 200 * 1024, 2 * MiB, 16 * MiB]))
        write_text(d / f"app-{i:05d}.log", n, rng)
        stats["text"] += n
        i += 1
    stats["usr"] = copy_usr(tree / "usr", usr_budget)
    d = tree / "srv" / "data"
    d.mkdir(parents=True)
    i = 0
    while stats["random"] < rand_budget:
        n = min(rand_budget - stats["random"], rng.choice([64 * 1024, MiB, 8 * MiB, 48 * MiB]))
        write_random(d / f"blob-{i:05d}.bin", n, rng)
        stats["random"] += n
        i += 1
    return stats


def mkfs(image: Path, tree: Path, size: int) -> None:
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate(size)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME="1767225600")
    subprocess.run(
        [
            "mkfs.ext4", "-q", "-F", "-U", UUID, "-E", f"hash_seed={UUID},root_owner=0:0",
            "-L", "havenbench", "-d", str(tree), str(image),
        ],
        check=True,
        env=env,
    )  # fmt: skip


MUTATE = r"""
import os, random, sys
from pathlib import Path
root, seed, budget = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
files = sorted(p for p in root.rglob("*") if p.is_file())
rng.shuffle(files)
written = 0
for p in files:
    if written >= budget:
        break
    size = p.stat().st_size
    r = rng.random()
    if r < 0.6 and size > 4096:          # rewrite a range in place
        off = rng.randrange(0, size) & ~4095
        n = min(size - off, rng.choice([4096, 65536, 262144, 1 << 20]))
        with p.open("r+b") as f:
            f.seek(off); f.write(rng.randbytes(n))
        written += n
    elif r < 0.85:                        # append
        n = rng.choice([4096, 32768, 262144])
        with p.open("ab") as f:
            f.write(rng.randbytes(n))
        written += n
    elif r < 0.95:                        # new file
        n = rng.choice([65536, 1 << 20, 4 << 20])
        (p.parent / (p.name + ".new")).write_bytes(rng.randbytes(n))
        written += n
    else:                                  # delete
        p.unlink()
os.sync()
print(written)
"""


def mutate(image: Path, changed: Path, seed: int, budget: int) -> None:
    subprocess.run(["cp", "--sparse=always", str(image), str(changed)], check=True)
    with tempfile.TemporaryDirectory(prefix="havenbench-mnt-") as mnt:
        script = (
            f"set -e; mount -o loop {changed} {mnt}; "
            f"python3 -c {sh_quote(MUTATE)} {mnt} {seed} {budget}; umount {mnt}"
        )
        subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], check=True
        )


def sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def diff_blocks(a: Path, b: Path) -> list[list[int]]:
    """Merged runs of 64 KiB blocks that differ between the two images."""
    runs: list[list[int]] = []
    with a.open("rb") as fa, b.open("rb") as fb:
        off = 0
        buf = 64 * BLOCK
        while True:
            x, y = fa.read(buf), fb.read(buf)
            if not x and not y:
                break
            for i in range(0, max(len(x), len(y)), BLOCK):
                if x[i : i + BLOCK] != y[i : i + BLOCK]:
                    o = off + i
                    if runs and runs[-1][0] + runs[-1][1] == o:
                        runs[-1][1] += BLOCK
                    else:
                        runs.append([o, BLOCK])
            off += max(len(x), len(y))
    return runs


def used_bytes(image: Path) -> int:
    out = subprocess.run(
        ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    bs = int(fields["Block size"])
    return (int(fields["Block count"]) - int(fields["Free blocks"])) * bs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(Path(__file__).resolve().parent / "work"))
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--change", type=float, default=0.02, help="target changed fraction")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    size = args.size_mib * MiB
    base, changed = work / "base.img", work / "changed.img"
    meta_path = work / "images.json"
    want = {"size": size, "seed": args.seed, "change": args.change}
    if not args.force and meta_path.exists() and base.exists() and changed.exists():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in want.items()):
            log(f"reusing {base} and {changed} (--force rebuilds)")
            print(json.dumps(meta, indent=2))
            return 0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="havenbench-tree-", dir=work) as tree:
        log(f"populating a tree for {args.size_mib} MiB (seed {args.seed})")
        parts = populate(Path(tree), size, args.seed)
        log(f"mkfs.ext4 -d ({parts})")
        mkfs(base, Path(tree), size)
    log("mutating a copy")
    # Data writes are ~80% of the change; ext4 metadata and the journal add the rest.
    mutate(base, changed, args.seed + 1, int(size * args.change * 0.8))
    log("diffing images at 64 KiB")
    runs = diff_blocks(base, changed)
    (work / "changed-extents.json").write_text(json.dumps(runs))
    changed_bytes = sum(n for _, n in runs)
    meta = {
        **want,
        "used_bytes": used_bytes(base),
        "used_fraction": round(used_bytes(base) / size, 4),
        "parts": parts,
        "changed_bytes": changed_bytes,
        "changed_fraction": round(changed_bytes / size, 4),
        "changed_runs": len(runs),
        "block": BLOCK,
        "build_seconds": round(time.monotonic() - t0, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
