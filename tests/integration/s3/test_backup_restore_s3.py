"""End to end through a real S3 endpoint (the Swift lab's s3api, lab/swift/up.sh): init a
repository in a bucket, back up a sparse volume, back up an incremental with changed
extents, reopen through ``open_backend("s3://...")`` as the CLI does, restore both, check
the repository reading every object. Marked ``swift`` (it needs the Swift lab); without
the lab it skips on a developer machine and fails in CI."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.s3_lab import backend_fixture, s3_env
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
from haven.datamover.backends.s3 import S3Backend
from haven.domain.extents import Extent

pytestmark = [pytest.mark.swift, pytest.mark.slow]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return s3_env()


@pytest.fixture
def s3(env: dict[str, str]) -> Iterator[S3Backend]:
    yield from backend_fixture(env, prefix="repos/e2e")


def test_backup_incremental_restore_check(
    s3: S3Backend, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rng = random.Random(7)
    vol = tmp_path / "vol.img"
    size = 8 * MiB + 12345  # not a multiple of the chunk size
    make_volume(vol, size, rng)

    repo = Repository.init(
        s3, password="pw", chunk_size=CHUNK, pack_size=MiB, scrypt=ScryptParams(log_n=10)
    )
    with FileSource(vol) as src:
        full = backup_volume(repo, src, volume="vol", point_id="rp-1")
    assert full.stats.chunks_zero > 0  # holes were skipped

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

    # A fresh handle through the URL factory, settings from HAVEN_S3_*, as the CLI opens it.
    reopened = Repository.open(open_backend(f"s3://{s3.bucket}/repos/e2e"), password="pw")
    out_full, out_incr = tmp_path / "full.img", tmp_path / "incr.img"
    restore_volume(reopened, full.manifest.manifest_id, out_full)
    restore_volume(reopened, incr.manifest.manifest_id, out_incr)
    assert sha256(out_incr) == sha256(vol)
    assert out_full.stat().st_size == size
    assert sha256(out_full) != sha256(vol)

    restore_volume(reopened, incr.manifest.manifest_id, out_full, into_existing=True)
    assert sha256(out_full) == sha256(vol)

    report = check(reopened, read_data=True)
    assert report.ok, report
    # Everything lives under the prefix, and the bucket holds no plaintext of the volume.
    keys = [info.key for info in s3.list()]
    assert any(k.startswith("data/") for k in keys) and "config" in keys
    marker = b"text text text text "
    for key in keys:
        assert marker not in s3.get(key), key
    assert env["HAVEN_S3_SECRET_KEY"] not in s3.describe()
