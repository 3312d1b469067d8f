"""End to end through each remote store of the Swift lab (lab/swift/up.sh): Swift itself
and its S3 API. Init a repository, back up a sparse volume, back up an incremental with
changed extents, reopen through ``open_backend(URL)`` as the CLI does (settings from
HAVEN_SWIFT_* / HAVEN_S3_*), restore both, check the repository reading every object.
Marked ``swift``; without the lab it skips on a developer machine and fails in CI."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.contract import swift_lab
from tests.support import s3_lab
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
from haven.datamover.backends.base import Backend
from haven.datamover.backends.s3 import S3Backend
from haven.datamover.backends.swift import SwiftBackend
from haven.domain.extents import Extent

pytestmark = [pytest.mark.swift, pytest.mark.slow]


@dataclass(frozen=True)
class Store:
    env: Callable[[], dict[str, str]]
    fixture: Callable[..., Iterator[Backend]]
    url: Callable[[Backend], str]  # the repository's URL, as an operator writes it
    secret: str  # the setting that must never show in describe()


def _swift_url(b: Backend) -> str:
    assert isinstance(b, SwiftBackend)
    return f"swift://{b.container}/repos/e2e"


def _s3_url(b: Backend) -> str:
    assert isinstance(b, S3Backend)
    return f"s3://{b.bucket}/repos/e2e"


STORES = {
    "swift": Store(swift_lab.swift_env, swift_lab.backend_fixture, _swift_url, "HAVEN_SWIFT_KEY"),
    "s3": Store(s3_lab.s3_env, s3_lab.backend_fixture, _s3_url, "HAVEN_S3_SECRET_KEY"),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param]


@pytest.fixture
def env(store: Store) -> dict[str, str]:
    return store.env()


@pytest.fixture
def backend(store: Store, env: dict[str, str]) -> Iterator[Backend]:
    yield from store.fixture(env, prefix="repos/e2e")


def test_backup_incremental_restore_check(
    store: Store,
    backend: Backend,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rng = random.Random(7)
    vol = tmp_path / "vol.img"
    size = 8 * MiB + 12345  # not a multiple of the chunk size
    make_volume(vol, size, rng)

    repo = Repository.init(
        backend, password="pw", chunk_size=CHUNK, pack_size=MiB, scrypt=ScryptParams(log_n=10)
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

    # A fresh handle through the URL factory, settings from the environment, as the CLI.
    reopened = Repository.open(open_backend(store.url(backend)), password="pw")
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
    # Everything lives under the prefix, and the store holds no plaintext of the volume.
    keys = [info.key for info in backend.list()]
    assert any(k.startswith("data/") for k in keys) and "config" in keys
    marker = b"text text text text "
    for key in keys:
        assert marker not in backend.get(key), key
    assert env[store.secret] not in backend.describe()
