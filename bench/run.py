#!/usr/bin/env python3
"""Data-mover benchmark: Haven vs restic vs borg on the same images, in the same run.

    sudo apt-get install restic borgbackup      # bench/setup.sh does this
    python3 bench/make_image.py                 # base.img, changed.img, changed-extents.json
    .venv/bin/python bench/run.py [--tools haven,restic,borg-zstd,borg-lz4] [--no-verify]

For each tool, with a fresh repository on local disk: full backup of ``base.img``;
incremental backup of ``changed.img`` under the same path (Haven with the changed-extent
list; restic and borg their normal incremental, which re-reads the file and dedups);
restore of the incremental point from the local repository. Every step runs as a child
process and is measured the same way: wall time, user+sys CPU and peak RSS from
``os.wait4`` of that child; MB/s = volume size (10^6 bytes) / wall time. Restored images
are compared with ``cmp`` (outside the timing).

The page cache cannot be dropped on this shared machine (other work runs on it, and
drop_caches is not reliable in this container): instead each input image is read once
right before every tool's backup, so all tools start warm. The machine is noisy (2
vCPUs shared with other jobs): compare the ratios, which are measured in the same run.

Writes ``bench/results/<date>-datamover.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
PASSWORD = "haven-bench-password"
MB = 1_000_000
MiB = 1 << 20


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def measure(cmd: list[str], *, env: dict[str, str], cwd: Path, logf: Path) -> dict[str, Any]:
    """Run ``cmd`` as a child; wall, user+sys CPU and peak RSS of that child alone."""
    with logf.open("ab") as lf:
        lf.write(("\n$ " + " ".join(cmd) + "\n").encode())
        lf.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=lf, stderr=lf)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}); see {logf}")
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        "user_s": round(ru.ru_utime, 3),
        "sys_s": round(ru.ru_stime, 3),
        "peak_rss_mib": round(ru.ru_maxrss / 1024, 1),  # ru_maxrss is KiB on Linux
    }


def warm(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, 8 * MiB):
            pass
    finally:
        os.close(fd)


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def settle() -> None:
    """Before every timed step of every tool: write back dirty pages (the previous step's
    repository or restored image) so that no step pays for another's writeback."""
    os.sync()


def disk_ceiling(work: Path, logf: Path, nbytes: int) -> dict[str, Any]:
    """What this disk can do for a restore, measured in the same run: ``dd`` writing
    ``nbytes`` (what a sparse restore of the changed image writes) with ``O_DIRECT``
    and a final fsync, then reading it back with ``O_DIRECT``. No tool can restore
    faster than the disk writes, so restore is also reported as a fraction of this."""
    bs = 8 * MiB
    count = max(1, nbytes // bs)
    path = work / "ceiling.img"
    env = dict(os.environ)
    settle()
    try:
        w = measure(
            ["dd", "if=/dev/zero", f"of={path}", f"bs={bs}", f"count={count}",
             "oflag=direct", "conv=fsync"],
            env=env, cwd=work, logf=logf,
        )  # fmt: skip
        r = measure(
            ["dd", f"if={path}", "of=/dev/null", f"bs={bs}", "iflag=direct"],
            env=env, cwd=work, logf=logf,
        )  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    n = count * bs
    return {
        "bytes": n,
        "write_s": w["wall_s"],
        "read_s": r["wall_s"],
        "write_mb_s": round(n / MB / w["wall_s"], 1),
        "read_mb_s": round(n / MB / r["wall_s"], 1),
    }


def set_volume(src_dir: Path, image: Path) -> Path:
    """``src_dir/vol.img`` becomes a hard link to ``image``: same path for every backup."""
    vol = src_dir / "vol.img"
    vol.unlink(missing_ok=True)
    os.link(image, vol)
    return vol


class Tool:
    name = ""

    def __init__(self, work: Path, logf: Path) -> None:
        self.work = work
        self.repo = work / "repos" / self.name
        self.logf = logf
        self.env = dict(os.environ)

    def reset(self) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)
        self.repo.parent.mkdir(parents=True, exist_ok=True)

    def run(self, cmd: list[str], cwd: Path | None = None) -> dict[str, Any]:
        return measure(cmd, env=self.env, cwd=cwd or self.work, logf=self.logf)

    def init(self) -> None:
        raise NotImplementedError

    def full(self, vol: Path) -> dict[str, Any]:
        raise NotImplementedError

    def incremental(self, vol: Path, extents: Path) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, target_dir: Path, vol: Path) -> tuple[dict[str, Any], Path]:
        raise NotImplementedError

    def repo_size(self) -> int:
        return dir_size(self.repo)


class Haven(Tool):
    name = "haven"

    def __init__(self, work: Path, logf: Path, *, cbt: bool = True) -> None:
        if not cbt:
            self.name = "haven-nocbt"
        super().__init__(work, logf)
        self.cbt = cbt
        self.env["HAVEN_BENCH_PASSWORD"] = PASSWORD
        self.py = str(REPO_ROOT / ".venv" / "bin" / "python")
        if not Path(self.py).exists():
            self.py = sys.executable
        # Run Haven as installed: byte-compiled (pip compiles on install, as Debian does
        # for borg). A PYTHONDONTWRITEBYTECODE environment would otherwise recompile every
        # module in every step; the cache lives in the work directory, not the tree.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        subprocess.run(
            [self.py, "-m", "compileall", "-q", str(REPO_ROOT / "src" / "haven")],
            env=self.env, check=False, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.op = str(HERE / "haven_op.py")
        self.full_manifest = ""
        self.last_manifest = ""

    def init(self) -> None:
        self.run([self.py, self.op, "init", str(self.repo)])

    def _backup(self, vol: Path, extra: list[str]) -> dict[str, Any]:
        out = self.work / f"{self.name}-backup.json"
        m = self.run(
            [self.py, self.op, "backup", str(self.repo), str(vol), "vol", str(out), *extra]
        )
        doc = json.loads(out.read_text())
        self.last_manifest = doc["manifest_id"]
        m["detail"] = doc
        return m

    def full(self, vol: Path) -> dict[str, Any]:
        m = self._backup(vol, [])
        self.full_manifest = self.last_manifest
        return m

    def incremental(self, vol: Path, extents: Path) -> dict[str, Any]:
        extra = ["--parent", self.full_manifest]
        if self.cbt:
            extra += ["--changed", str(extents)]
        return self._backup(vol, extra)

    def restore(self, target_dir: Path, vol: Path) -> tuple[dict[str, Any], Path]:
        target = target_dir / "vol.img"
        out = self.work / f"{self.name}-restore.json"
        m = self.run(
            [self.py, self.op, "restore", str(self.repo), self.last_manifest, str(target), str(out)]
        )
        m["detail"] = json.loads(out.read_text())
        return m, target


class HavenSwift(Haven):
    """Haven with its repository in the Swift lab (lab/swift/up.sh), through the real HTTP
    path: shows what the remote store costs. Needs the lab's env file."""

    name = "haven-swift"

    def __init__(self, work: Path, logf: Path) -> None:
        super().__init__(work, logf)
        env_file = Path(
            os.environ.get("HAVEN_SWIFT_ENV_FILE", REPO_ROOT / "lab" / ".state" / "swift" / "env")
        )
        from haven.datamover.backends.swift import read_env_file

        self.env.update(read_env_file(env_file))
        self.url = "swift://haven-bench/repo"

    def _backend(self) -> Any:
        from haven.datamover.backends.swift import from_url

        return from_url(self.url, self.env)

    def reset(self) -> None:
        b = self._backend()
        for info in list(b.list()):
            b.delete(info.key)
        b.close()

    def init(self) -> None:
        self.run([self.py, self.op, "init", self.url])

    def _backup(self, vol: Path, extra: list[str]) -> dict[str, Any]:
        out = self.work / f"{self.name}-backup.json"
        m = self.run([self.py, self.op, "backup", self.url, str(vol), "vol", str(out), *extra])
        doc = json.loads(out.read_text())
        self.last_manifest = doc["manifest_id"]
        m["detail"] = doc
        return m

    def restore(self, target_dir: Path, vol: Path) -> tuple[dict[str, Any], Path]:
        target = target_dir / "vol.img"
        out = self.work / f"{self.name}-restore.json"
        m = self.run(
            [self.py, self.op, "restore", self.url, self.last_manifest, str(target), str(out)]
        )
        m["detail"] = json.loads(out.read_text())
        return m, target

    def repo_size(self) -> int:
        b = self._backend()
        try:
            return sum(i.size for i in b.list())
        finally:
            b.close()


class Restic(Tool):
    name = "restic"

    def __init__(self, work: Path, logf: Path) -> None:
        super().__init__(work, logf)
        self.env.update(
            RESTIC_PASSWORD=PASSWORD,
            RESTIC_REPOSITORY=str(self.repo),
            RESTIC_CACHE_DIR=str(work / "cache" / "restic"),
        )

    def reset(self) -> None:
        super().reset()
        shutil.rmtree(self.work / "cache" / "restic", ignore_errors=True)

    def init(self) -> None:
        self.run(["restic", "init"])

    def full(self, vol: Path) -> dict[str, Any]:
        return self.run(["restic", "backup", "--host", "bench", str(vol)])

    def incremental(self, vol: Path, extents: Path) -> dict[str, Any]:
        return self.run(["restic", "backup", "--host", "bench", str(vol)])

    def restore(self, target_dir: Path, vol: Path) -> tuple[dict[str, Any], Path]:
        m = self.run(["restic", "restore", "latest", "--target", str(target_dir)])
        return m, target_dir / str(vol).lstrip("/")


class Borg(Tool):
    def __init__(self, work: Path, logf: Path, compression: str) -> None:
        self.name = "borg-" + compression.split(",")[0]
        super().__init__(work, logf)
        self.compression = compression
        self.env.update(
            BORG_PASSPHRASE=PASSWORD,
            BORG_REPO=str(self.repo),
            BORG_BASE_DIR=str(work / "cache" / self.name),
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )

    def reset(self) -> None:
        super().reset()
        shutil.rmtree(self.work / "cache" / self.name, ignore_errors=True)

    def init(self) -> None:
        # repokey = AES-CTR + HMAC-SHA256 (this CPU has SHA-NI, so faster than blake2).
        self.run(["borg", "init", "--encryption", "repokey"])

    def full(self, vol: Path) -> dict[str, Any]:
        return self.run(
            ["borg", "create", "--compression", self.compression, "::full", vol.name],
            cwd=vol.parent,
        )

    def incremental(self, vol: Path, extents: Path) -> dict[str, Any]:
        return self.run(
            ["borg", "create", "--compression", self.compression, "::incr", vol.name],
            cwd=vol.parent,
        )

    def restore(self, target_dir: Path, vol: Path) -> tuple[dict[str, Any], Path]:
        m = self.run(["borg", "extract", "--sparse", "::incr"], cwd=target_dir)
        return m, target_dir / vol.name


def make_tools(names: list[str], work: Path, logf: Path) -> list[Tool]:
    table = {
        "haven": lambda: Haven(work, logf),
        "haven-nocbt": lambda: Haven(work, logf, cbt=False),
        "haven-swift": lambda: HavenSwift(work, logf),
        "restic": lambda: Restic(work, logf),
        "borg-zstd": lambda: Borg(work, logf, "zstd,1"),
        "borg-lz4": lambda: Borg(work, logf, "lz4"),
    }
    return [table[n]() for n in names]


def bench_tool(tool: Tool, images: dict[str, Path], verify: bool) -> dict[str, Any]:
    size = images["base"].stat().st_size
    src = tool.work / "src"
    src.mkdir(exist_ok=True)
    tool.reset()
    tool.init()
    res: dict[str, Any] = {"tool": tool.name}

    vol = set_volume(src, images["base"])
    warm(vol)
    settle()
    log(f"{tool.name}: full backup")
    res["full"] = tool.full(vol)
    res["full"]["repo_bytes"] = tool.repo_size()

    vol = set_volume(src, images["changed"])
    warm(vol)
    settle()
    log(f"{tool.name}: incremental backup")
    res["incremental"] = tool.incremental(vol, images["extents"])
    res["incremental"]["repo_bytes"] = tool.repo_size()

    target_dir = tool.work / "restore" / tool.name
    shutil.rmtree(target_dir, ignore_errors=True)
    target_dir.mkdir(parents=True)
    settle()
    log(f"{tool.name}: restore")
    res["restore"], restored = tool.restore(target_dir, vol)
    if verify:
        same = subprocess.run(["cmp", "-s", str(restored), str(images["changed"])]).returncode == 0
        res["restore"]["verified_identical"] = same
        if not same:
            log(f"{tool.name}: RESTORED IMAGE DIFFERS")
    shutil.rmtree(target_dir, ignore_errors=True)
    for step in ("full", "incremental", "restore"):
        res[step]["mb_s"] = round(size / MB / res[step]["wall_s"], 1)
    return res


def median_of(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per step, the median of each numeric measure over the rounds (rounds kept as
    ``samples``)."""
    out: dict[str, Any] = {"tool": rs[0]["tool"], "rounds": len(rs)}
    for step in ("full", "incremental", "restore"):
        merged = dict(rs[-1][step])
        for k in ("wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mib", "mb_s"):
            merged[k] = statistics.median(r[step][k] for r in rs)
        merged["wall_samples"] = [r[step]["wall_s"] for r in rs]
        if "verified_identical" in merged:
            merged["verified_identical"] = all(r[step]["verified_identical"] for r in rs)
        out[step] = merged
    return out


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    h = results.get("haven")
    out: dict[str, Any] = {}
    if not h:
        return out
    for other in ("restic", "borg-zstd", "borg-lz4"):
        o = results.get(other)
        if not o:
            continue
        steps = ("full", "incremental", "restore")
        out[other] = {step: round(o[step]["wall_s"] / h[step]["wall_s"], 2) for step in steps}
        out[other]["repo_size"] = round(h["full"]["repo_bytes"] / o["full"]["repo_bytes"], 3)
        # Less sensitive to the machine's load: CPU seconds, and the wall-time ratio within
        # each round (both tools ran minutes apart in the same round), median over rounds.
        out[other]["cpu"] = {step: round(o[step]["cpu_s"] / h[step]["cpu_s"], 2) for step in steps}
        out[other]["per_round"] = {
            step: round(
                statistics.median(
                    a / b
                    for a, b in zip(o[step]["wall_samples"], h[step]["wall_samples"], strict=False)
                ),
                2,
            )
            for step in steps
        }
    return out


def ceiling_summary(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Medians of the per-round dd measurements (samples kept)."""
    if not samples:
        return None
    out: dict[str, Any] = {"bytes": samples[0]["bytes"], "samples": samples}
    for k in ("write_s", "read_s", "write_mb_s", "read_mb_s"):
        out[k] = statistics.median(x[k] for x in samples)
    return out


def restore_vs_disk(h: dict[str, Any], disk: dict[str, Any] | None, size: int) -> str | None:
    """Haven's restore against the disk, measured in the same run: the time ``dd`` needs
    to write the bytes Haven's restore wrote, and to read the pack bytes it fetched and
    then write (both on the same disk), each divided by Haven's restore wall time
    (1.0 = as fast as the disk)."""
    if not disk:
        return None
    detail = h["restore"].get("detail", {})
    written, fetched = detail.get("bytes_written"), detail.get("bytes_fetched")
    if not written:
        return None
    wall = h["restore"]["wall_s"]
    write_only = written / (disk["write_mb_s"] * MB)
    text = (
        f"{write_only / wall:.2f} of the disk's O_DIRECT write ceiling "
        f"({disk['write_mb_s']:.0f} MB/s: writing the restored {written / MB:.0f} MB takes dd "
        f"{write_only:.2f} s, i.e. at most {size / 1e9 / write_only:.2f} GB/s of volume)"
    )
    if fetched:
        both = write_only + fetched / (disk["read_mb_s"] * MB)
        text += (
            f"; counting the {fetched / MB:.0f} MB of packs it reads from the same disk "
            f"({disk['read_mb_s']:.0f} MB/s), dd needs {both:.2f} s, so Haven ran at "
            f"{both / wall:.2f} of that read+write ceiling "
            f"({size / 1e9 / both:.2f} GB/s of volume)"
        )
    return text


def targets(results: dict[str, dict[str, Any]], size: int) -> list[tuple[str, str, bool]]:
    h, r, b = results.get("haven"), results.get("restic"), results.get("borg-zstd")
    out: list[tuple[str, str, bool]] = []
    if not h:
        return out
    if r:
        x = r["full"]["wall_s"] / h["full"]["wall_s"]
        out.append(("full backup >= 5x faster than restic", f"{x:.1f}x", x >= 5))
        x = r["incremental"]["wall_s"] / h["incremental"]["wall_s"]
        out.append(
            ("incremental (changed extents) >= 20x faster than restic", f"{x:.1f}x", x >= 20)
        )
    if b:
        x = b["full"]["wall_s"] / h["full"]["wall_s"]
        out.append(("full backup >= 2x faster than borg (zstd,1)", f"{x:.1f}x", x >= 2))
        d = h["full"]["repo_bytes"] / b["full"]["repo_bytes"] - 1
        out.append(("repository size within 5% of borg zstd,1", f"{d * 100:+.1f}%", abs(d) <= 0.05))
    gbs = size / 1e9 / h["restore"]["wall_s"]
    out.append(("restore from a local repository >= 1 GB/s", f"{gbs:.2f} GB/s", gbs >= 1))

    rss = max(h[s]["peak_rss_mib"] for s in ("full", "incremental", "restore"))
    out.append(("peak RSS < 500 MB for a 2 GiB volume", f"{rss:.0f} MiB", rss * MiB < 500 * MB))
    return out


def render_md(doc: dict[str, Any]) -> str:
    res = doc["results"]
    size = doc["images"]["size"]
    lines = [
        f"# Data mover benchmark, {doc['date']}",
        "",
        f"Machine: {doc['machine']['cpus']} vCPUs ({doc['machine']['cpu']}), "
        f"{doc['machine']['kernel']}; load average before/after: "
        f"{doc['load_before']} / {doc['load_after']} (shared, noisy: compare ratios).",
        f"Volume: {size / MiB:.0f} MiB ext4 image, {doc['images']['used_fraction'] * 100:.0f}% "
        f"used; incremental: {doc['images']['changed_fraction'] * 100:.1f}% of 64 KiB blocks "
        f"changed ({doc['images']['changed_runs']} runs).",
        f"Tools: {doc['versions']}. Command: `{doc['command']}`.",
        "Page cache not dropped (not possible reliably here); each image is read once before "
        "each tool's backup, so every tool starts warm, and `sync` runs before every timed "
        "step of every tool (no step pays for the previous one's writeback). Repositories "
        "and restores on the same local disk. Haven runs byte-compiled (as installed). "
        "`haven` incremental = with the changed-extent list (CBT); `haven-nocbt` = "
        "without it (re-reads the image, dedups against the parent); restic and borg: their "
        "normal incremental (re-read + dedup). borg: `--encryption repokey`, `--compression "
        "zstd,1` or `lz4`; restic: default (zstd auto). Restores verified identical with "
        f"`cmp`: {doc['all_verified']}.",
        "",
        f"Medians of {doc['rounds']} interleaved round(s), the tool order reversed every "
        "other round (haven-swift's rounds after the local tools'); wall-time samples in "
        "the .json. "
        "Every step is a fresh process (interpreter start, repository open and key derivation "
        "included)."
        + (
            " `haven-swift`: Haven with its repository in the Swift lab (lab/swift) on this "
            "machine, whose daemons compete for the same 2 vCPUs."
            if "haven-swift" in res
            else ""
        ),
        "",
        "| tool | step | wall s | CPU s | MB/s | repo MiB | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in res.items():
        for step in ("full", "incremental", "restore"):
            s = r[step]
            repo = f"{s['repo_bytes'] / MiB:.0f}" if "repo_bytes" in s else ""
            lines.append(
                f"| {name} | {step} | {s['wall_s']:.2f} | {s['cpu_s']:.2f} | {s['mb_s']:.0f} | "
                f"{repo} | {s['peak_rss_mib']:.0f} |"
            )
    inproc = [
        f"{name} {step} {r[step]['detail']['elapsed']:.2f} s"
        for name, r in res.items()
        if name.startswith("haven")
        for step in ("full", "incremental", "restore")
        if "elapsed" in r[step].get("detail", {})
    ]
    if inproc:
        lines += [
            "",
            "Haven's own timer inside the process (without interpreter start, imports, "
            "repository open and key derivation; last round): " + ", ".join(inproc) + ".",
        ]
    phases = [
        f"{name} {step}: "
        + ", ".join(
            f"{k.replace('_', ' ')} {v:.2f}" for k, v in r[step]["detail"]["phases"].items()
        )
        for name, r in res.items()
        if name.startswith("haven")
        for step in ("incremental", "restore")
        if "phases" in r[step].get("detail", {})
    ]
    if phases:
        lines += [
            "",
            "Before that timer starts (seconds, last round; the key derivation is scrypt "
            "N=2^15, r=8, p=1): " + "; ".join(phases) + ".",
        ]
    disk = doc.get("disk")
    if disk:
        lines += [
            "",
            f"Disk ceiling, same run (`dd` with `oflag=direct conv=fsync`, then "
            f"`iflag=direct`, {disk['bytes'] / MB:.0f} MB = the changed image's allocated "
            f"bytes, medians of {len(disk['samples'])}): write {disk['write_mb_s']:.0f} MB/s "
            f"({disk['write_s']:.2f} s), read {disk['read_mb_s']:.0f} MB/s "
            f"({disk['read_s']:.2f} s). A restore writes about that much (and reads the "
            "packs from the same disk), so it cannot finish faster than the write time.",
        ]
    if doc["ratios"]:
        lines += [
            "",
            "Haven's speed-up (other tool's wall time / Haven's) and repository size ratio:",
            "",
            "| vs | full | incremental | restore | repo size after full (Haven/other) |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for other, x in doc["ratios"].items():
            lines.append(
                f"| {other} | {x['full']}x | {x['incremental']}x | {x['restore']}x | "
                f"{x['repo_size']} |"
            )
        if all("cpu" in x for x in doc["ratios"].values()):
            lines += [
                "",
                "The same by CPU seconds (user+sys), and by wall time within each round "
                "(median of the per-round ratios): on a shared, loaded machine these move "
                "less than the ratio of medians above.",
                "",
                "| vs | full CPU | incremental CPU | restore CPU | full per round | "
                "incremental per round | restore per round |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for other, x in doc["ratios"].items():
                c, r = x["cpu"], x["per_round"]
                lines.append(
                    f"| {other} | {c['full']}x | {c['incremental']}x | {c['restore']}x | "
                    f"{r['full']}x | {r['incremental']}x | {r['restore']}x |"
                )
    if doc["targets"]:
        lines += ["", "| target | measured | met |", "| --- | ---: | :---: |"]
        for t, v, ok in doc["targets"]:
            lines.append(f"| {t} | {v} | {'yes' if ok else 'NO'} |")
    if doc.get("restore_vs_disk"):
        lines += ["", f"Haven's restore ran at {doc['restore_vs_disk']}."]
    lines.append("")
    return "\n".join(lines)


def versions(tools: list[str]) -> str:
    out = []
    if any(t.startswith("restic") for t in tools):
        out.append(
            subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.split(
                " compiled"
            )[0]
        )
    if any(t.startswith("borg") for t in tools):
        out.append(
            subprocess.run(["borg", "--version"], capture_output=True, text=True).stdout.strip()
        )
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        out.append(f"haven @ {head}")
    except OSError:
        pass
    return ", ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description="Haven vs restic vs borg")
    ap.add_argument("--work", default=str(HERE / "work"))
    ap.add_argument("--tools", default="haven,haven-nocbt,restic,borg-zstd,borg-lz4")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; medians are reported")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--tag", default="datamover")
    ap.add_argument("--render", help="only re-render the .md (and ratios) from this .json")
    ap.add_argument(
        "--no-ceiling", action="store_true", help="skip the dd disk-ceiling measurement"
    )
    args = ap.parse_args()
    if args.render:
        src = Path(args.render)
        doc = json.loads(src.read_text())
        doc["ratios"] = ratios(doc["results"])
        doc["targets"] = targets(doc["results"], doc["images"]["size"])
        if "haven" in doc["results"]:
            doc["restore_vs_disk"] = restore_vs_disk(
                doc["results"]["haven"], doc.get("disk"), doc["images"]["size"]
            )
        src.write_text(json.dumps(doc, indent=2) + "\n")
        src.with_suffix(".md").write_text(render_md(doc))
        print(render_md(doc))
        return 0
    work = Path(args.work)
    images = {
        "base": work / "base.img",
        "changed": work / "changed.img",
        "extents": work / "changed-extents.json",
    }
    if not all(p.exists() for p in images.values()):
        log("images missing: run bench/make_image.py first")
        return 2
    meta = json.loads((work / "images.json").read_text())
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    logf = work / "bench.log"
    logf.write_text("")
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[dict[str, Any]]] = {}
    tools = make_tools(names, work, logf)
    # Interleaved rounds (every tool sees the same noise), the order reversed every other
    # round so that no tool always runs right after the same neighbour. Tools with a
    # remote repository (haven-swift: Swift daemons on this machine, whose disk image is
    # cached and written back twice) run their rounds after all local tools', so they
    # do not disturb the local comparison.
    local = [t for t in tools if not isinstance(t, HavenSwift)]
    remote = [t for t in tools if isinstance(t, HavenSwift)]
    # bytes a sparse restore writes: the changed image's allocated blocks
    restore_bytes = images["changed"].stat().st_blocks * 512
    ceilings: list[dict[str, Any]] = []
    for group in (local, remote):
        for rnd in range(args.repeat):
            if group is local and not args.no_ceiling:
                log(f"round {rnd + 1}/{args.repeat}: disk ceiling (dd, O_DIRECT)")
                ceilings.append(disk_ceiling(work, logf, restore_bytes))
                log(f"disk: {json.dumps(ceilings[-1])}")
            for tool in group if rnd % 2 == 0 else group[::-1]:
                log(f"round {rnd + 1}/{args.repeat}")
                r = bench_tool(tool, images, verify=not args.no_verify)
                runs.setdefault(tool.name, []).append(r)
                walls = {s: r[s]["wall_s"] for s in ("full", "incremental", "restore")}
                log(f"{tool.name}: {json.dumps(walls)}")
                tool.reset()
    results = {name: median_of(rs) for name, rs in runs.items()}
    load_after = [round(x, 2) for x in os.getloadavg()]
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    now = dt.datetime.now(dt.UTC)
    doc = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python3 bench/make_image.py && .venv/bin/python bench/run.py --tools "
        + ",".join(names)
        + f" --repeat {args.repeat}",
        "machine": {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release()},
        "versions": versions(names),
        "load_before": load_before,
        "load_after": load_after,
        "images": meta,
        "rounds": args.repeat,
        "all_verified": all(r["restore"].get("verified_identical", False) for r in results.values())
        if not args.no_verify
        else "not checked",
        "results": results,
        "disk": ceiling_summary(ceilings),
    }
    doc["ratios"] = ratios(results)
    doc["targets"] = targets(results, meta["size"])
    if "haven" in results:
        doc["restore_vs_disk"] = restore_vs_disk(results["haven"], doc["disk"], meta["size"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{now.strftime('%Y-%m-%d')}-{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    md = render_md(doc)
    stem.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
