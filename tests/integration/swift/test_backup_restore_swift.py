"""End to end through a real Swift (lab/swift/up.sh): init a repository in a container,
back up a sparse volume, back up an incremental with changed extents, restore both,
check the repository reading every object. Marked ``swift``; without the lab it skips
on a developer machine and fails in CI."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.contract.swift_lab import backend_fixture, swift_env
from tests.support.volumes import CHUNK, MiB, make_volume, sha256

from haven.datamover import (
    FileSource,
    Repository,
    ScryptParams,
    backup_volume,
    check,
    open_backend,
    restore_volume,
)
from haven.datamover.backends.swift import SwiftBackend
from haven.domain.extents import Extent

pytestmark = [pytest.mark.swift, pytest.mark.slow]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return swift_env()


@pytest.fixture
def swift(env: dict[str, str]) -> Iterator[SwiftBackend]:
    yield from backend_fixture(env, prefix="repos/e2e")


def test_backup_incremental_restore_check(
    swift: SwiftBackend, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rng = random.Random(7)
    vol = tmp_path / "vol.img"
    size = 8 * MiB + 12345  # not a multiple of the chunk size
    make_volume(vol, size, rng)

    repo = Repository.init(
        swift, password="pw", chunk_size=CHUNK, pack_size=MiB, scrypt=ScryptParams(log_n=10)
    )
    with FileSource(vol) as src:
        full = backup_volume(repo, src, volume="vol", point_id="rp-1")
    assert full.stats.chunks_zero > 0  # holes were skipped

    # Change two ranges in place, as a guest would; tell the backup where.
    changed = [Extent(CHUNK + 100, 5000), Extent(6 * MiB, 70_000)]
    with vol.open("r+b") as f:
        for ext in changed:
            f.seek(ext.offset)
            f.write(rng.randbytes(ext.length))
    with FileSource(vol) as src:
        incr = backup_volume(
            repo, src, volume="vol", point_id="rp-2", parent=full.manifest, changed=changed
        )
    assert incr.stats.chunks_read <= 3
    assert incr.stats.chunks_from_parent > 0

    # A fresh handle through the URL factory, as the CLI would open it.
    reopened = Repository.open(open_backend(f"swift://{swift.container}/repos/e2e"), password="pw")
    out_full, out_incr = tmp_path / "full.img", tmp_path / "incr.img"
    restore_volume(reopened, full.manifest.manifest_id, out_full)
    restore_volume(reopened, incr.manifest.manifest_id, out_incr)
    assert sha256(out_incr) == sha256(vol)
    assert out_full.stat().st_size == size
    assert sha256(out_full) != sha256(vol)

    # Restoring into an existing copy writes only what differs and still verifies.
    restore_volume(reopened, incr.manifest.manifest_id, out_full, into_existing=True)
    assert sha256(out_full) == sha256(vol)

    report = check(reopened, read_data=True)
    assert report.ok, report
    # The repository in Swift holds no plaintext of the volume.
    marker = b"text text text text "
    for info in swift.list():
        assert marker not in swift.get(info.key), info.key
    assert os.environ.get("HAVEN_SWIFT_KEY", "not-set") not in swift.describe()
