"""SIGKILL a backup or prune subprocess at random points; the repository must check
clean, show no partial point, and the next backup must reuse uploaded chunks."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haven.datamover import (
    FileSource,
    Repository,
    backup_volume,
    check,
    new_master_key,
    restore_volume,
)
from haven.datamover.backends import LocalBackend
from haven.datamover.packs import INDEX_PREFIX

KiB = 1024
WORKER = Path(__file__).with_name("crash_worker.py")
RATE = 6 * 1024 * KiB  # slow uploads so kills land mid-run


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _kill_after(proc: subprocess.Popen[bytes], delay: float) -> bool:
    """SIGKILL after ``delay`` s; True if it was killed (False if it finished first)."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def _kill_when(proc: subprocess.Popen[bytes], repo: Repository, indexes: int) -> bool:
    """SIGKILL as soon as the repository holds ``indexes`` index objects."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(repo.backend.list(INDEX_PREFIX))) >= indexes:
            break
        time.sleep(0.005)
    return _kill_after(proc, 0)


def _assert_consistent(repo: Repository, expected: dict[str, str], tmp: Path) -> int:
    repo.reload_index()
    report = check(repo, read_data=True)
    assert report.ok, report.problems
    manifests = repo.manifests()
    for m in manifests:  # every visible point is complete
        out = tmp / "verify"
        restore_volume(repo, m, out)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == expected[m.point_id]
    return len(manifests)


@pytest.mark.slow
def test_sigkill_backup_and_prune(tmp_path: Path, repo_factory) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(int.from_bytes(os.urandom(4), "little"))
    repo_dir = tmp_path / "repo"
    master = new_master_key()
    repo = repo_factory(LocalBackend(repo_dir, fsync=False), master_key=master)
    key_hex = master.hex()
    expected: dict[str, str] = {}
    deadline = time.monotonic() + 60
    reused_checked = False

    for n in range(4):
        data = os.urandom(3 * 1024 * KiB) + bytes(512 * KiB) + os.urandom(256 * KiB)
        img = tmp_path / f"img{n}"
        img.write_bytes(data)
        expected[str(img)] = hashlib.sha256(data).hexdigest()
        indexes_before = len(list(repo.backend.list(INDEX_PREFIX)))
        points_before = len(repo.manifests())
        proc = _spawn("backup", str(repo_dir), key_hex, str(img), "vol", str(RATE))
        if n % 2 == 0:  # kill after a random number of packs were indexed
            killed = _kill_when(proc, repo, indexes_before + rnd.randint(1, 8))
        else:  # kill at a random time (startup, mid-pack, manifest, exit...)
            killed = _kill_after(proc, rnd.uniform(0.3, 1.2))
        count = _assert_consistent(repo, expected, tmp_path)
        # killed before the manifest: no point; after it (during exit): a complete one
        assert (
            count == points_before + 1
            if not killed
            else count in (points_before, points_before + 1)
        )
        uploaded_by_killed = len(list(repo.backend.list(INDEX_PREFIX))) - indexes_before
        # finish the point in-process: already indexed packs are reused
        with FileSource(img) as src:
            res = backup_volume(repo, src, volume="vol", point_id=str(img))
        if killed and uploaded_by_killed > 0:
            assert res.stats.chunks_dedup > 0
            assert res.stats.bytes_uploaded < len(data) - 512 * KiB
            reused_checked = True
        _assert_consistent(repo, expected, tmp_path)
        assert time.monotonic() < deadline

    for _ in range(3):
        proc = _spawn("prune", str(repo_dir), key_hex, "1", str(RATE // 2))
        _kill_after(proc, rnd.uniform(0.5, 1.2))
        _assert_consistent(repo, expected, tmp_path)
    assert reused_checked
