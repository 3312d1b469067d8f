from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.unit.datamover.sources import BytesSource

from haven.datamover import (
    FileSource,
    FileTarget,
    Progress,
    Repository,
    backup_volume,
    restore_volume,
)
from haven.datamover.errors import InvalidArgument
from haven.domain.extents import Extent

KiB = 1024
CHUNK = 64 * KiB


def _backup(repo: Repository, path: Path, **kw: object):  # type: ignore[no-untyped-def]
    with FileSource(path) as src:
        return backup_volume(repo, src, volume=str(kw.pop("volume", "vol")), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("fixture", ["mem_repo", "local_repo"])
def test_full_backup_restore_bit_for_bit(
    fixture: str, request: pytest.FixtureRequest, image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    repo: Repository = request.getfixturevalue(fixture)
    img = image(size=2 * 1024 * KiB + 1234)  # partial last chunk
    res = _backup(repo, img, point_id="p1")
    st = res.stats
    assert st.chunks_total == 33
    # holes are not read: only chunks overlapping data are
    assert st.chunks_read < 10
    assert st.chunks_zero == st.chunks_total - st.chunks_new - st.chunks_dedup
    out = tmp_path / "out"
    rs = restore_volume(repo, res.manifest.manifest_id, out)
    assert rs.verified
    assert out.read_bytes() == img.read_bytes()
    # restored file is sparse where the volume is zero
    assert os.stat(out).st_blocks * 512 < 1024 * KiB


def test_all_zero_chunks_not_stored_even_if_allocated(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    img = image(size=1024 * KiB, regions=[(0, bytes(1024 * KiB))])  # allocated zeros
    res = _backup(mem_repo, img)
    assert res.stats.chunks_new == 0
    assert all(c is None for c in res.manifest.chunks)


def test_second_backup_dedups(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    img = image()
    first = _backup(mem_repo, img)
    second = _backup(mem_repo, img, parent=first.manifest)
    assert second.stats.chunks_new == 0
    assert second.stats.bytes_uploaded == 0
    assert second.manifest.checksum == first.manifest.checksum
    assert second.manifest.parent == first.manifest.manifest_id


def test_cbt_incremental_reads_only_changed_chunks(
    mem_repo: Repository, image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    img = image(size=4096 * KiB, regions=[(0, os.urandom(4096 * KiB))])
    first = _backup(mem_repo, img)
    with open(img, "r+b") as f:
        f.seek(100 * KiB)
        f.write(b"changed!" * 100)
        f.seek(3000 * KiB)
        f.write(os.urandom(10))
    changed = [Extent(100 * KiB, 800), Extent(3000 * KiB, 10)]
    inc = _backup(mem_repo, img, parent=first.manifest.manifest_id, changed=changed)
    assert inc.stats.chunks_read == 2
    assert inc.stats.bytes_read == 2 * CHUNK
    assert inc.stats.chunks_from_parent == 64 - 2
    assert inc.stats.chunks_new == 2
    out = tmp_path / "out"
    restore_volume(mem_repo, inc.manifest, out)
    assert out.read_bytes() == img.read_bytes()
    full = _backup(mem_repo, img)
    assert full.manifest.checksum == inc.manifest.checksum


def test_cbt_grown_volume_reads_new_tail(mem_repo: Repository, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    img = image(size=1000 * KiB, regions=[(0, os.urandom(1000 * KiB))])
    first = _backup(mem_repo, img)
    with open(img, "r+b") as f:
        f.seek(1000 * KiB)
        f.write(os.urandom(300 * KiB))
    inc = _backup(mem_repo, img, parent=first.manifest, changed=[Extent(1000 * KiB, 300 * KiB)])
    out = tmp_path / "out"
    restore_volume(mem_repo, inc.manifest, out)
    assert out.read_bytes() == img.read_bytes()


def test_changed_without_parent_is_bad_input(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument):
        _backup(mem_repo, image(), changed=[Extent(0, 1)])


def test_restore_into_existing_writes_only_differing_chunks(
    mem_repo: Repository, image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    img = image(size=2048 * KiB, regions=[(0, os.urandom(2048 * KiB))])
    point = _backup(mem_repo, img)
    replica = tmp_path / "replica"
    restore_volume(mem_repo, point.manifest, replica)
    with open(replica, "r+b") as f:  # the replica drifted in 3 chunks, one now zero
        f.seek(5 * CHUNK + 7)
        f.write(b"drift")
        f.seek(20 * CHUNK)
        f.write(os.urandom(CHUNK + 1))
    stats = restore_volume(mem_repo, point.manifest, replica, into_existing=True)
    assert stats.chunks_written == 3
    assert stats.chunks_unchanged == 32 - 3
    assert replica.read_bytes() == img.read_bytes()


def test_restore_into_existing_zeroes_chunks(mem_repo: Repository, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    img = image(size=512 * KiB, regions=[(0, os.urandom(64 * KiB))])
    point = _backup(mem_repo, img)
    replica = tmp_path / "replica"
    replica.write_bytes(os.urandom(512 * KiB))
    stats = restore_volume(mem_repo, point.manifest, replica, into_existing=True)
    assert stats.chunks_zeroed == 7
    assert replica.read_bytes() == img.read_bytes()


def test_restore_to_blocktarget_object(mem_repo: Repository, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    img = image()
    point = _backup(mem_repo, img)
    with FileTarget(tmp_path / "t", point.manifest.size) as tgt:
        restore_volume(mem_repo, point.manifest, tgt)
    assert (tmp_path / "t").read_bytes() == img.read_bytes()


def test_progress_reports_reach_total(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    seen: list[Progress] = []
    img = image(size=1024 * KiB, regions=[(0, os.urandom(1024 * KiB))])
    _backup(mem_repo, img, progress=seen.append)
    assert seen
    last = seen[-1]
    assert last.bytes_done == last.bytes_total == 1024 * KiB
    assert last.rate > 0 and last.eta == 0


def test_find_manifest_by_volume_and_point(mem_repo: Repository, image) -> None:  # type: ignore[no-untyped-def]
    img = image()
    a = _backup(mem_repo, img, volume="a", point_id="rp1")
    _backup(mem_repo, img, volume="b", point_id="rp1")
    c = _backup(mem_repo, img, volume="a", point_id="rp2")
    assert mem_repo.find_manifest("a@rp1").manifest_id == a.manifest.manifest_id
    assert mem_repo.find_manifest("a").manifest_id == c.manifest.manifest_id
    assert [m.point_id for m in mem_repo.manifests("a")] == ["rp1", "rp2"]


def test_structural_block_source(mem_repo: Repository, tmp_path: Path) -> None:
    data = os.urandom(200 * KiB) + bytes(100 * KiB)
    res = backup_volume(mem_repo, BytesSource(data), volume="nbd")
    assert res.stats.chunks_zero >= 1
    restore_volume(mem_repo, res.manifest, tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == data


def test_cbt_shrunk_volume_rereads_partial_tail(
    mem_repo: Repository, image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(256 * KiB)
    big = _backup(mem_repo, image(size=len(data), regions=[(0, data)]))
    small = image(size=200 * KiB, regions=[(0, data[: 200 * KiB])])
    inc = _backup(mem_repo, small, parent=big.manifest, changed=[])
    out = tmp_path / "o"
    restore_volume(mem_repo, inc.manifest, out)
    assert out.read_bytes() == data[: 200 * KiB]


def test_os_errors_become_haven_errors(mem_repo: Repository, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from haven.datamover.errors import VolumeIOError

    class Broken(BytesSource):
        def readinto(self, offset: int, buf: memoryview) -> int:
            raise OSError(5, "Input/output error")

    with pytest.raises(VolumeIOError) as info:
        backup_volume(mem_repo, Broken(b"x" * 1000), volume="v")
    assert info.value.exit_code == 5 and "Input/output error" in str(info.value)
    res = _backup(mem_repo, image())
    with pytest.raises(VolumeIOError):
        restore_volume(mem_repo, res.manifest, tmp_path / "no" / "such" / "dir")


def test_restore_coalesces_reads_of_adjacent_chunks(tmp_path: Path, repo_factory) -> None:  # type: ignore[no-untyped-def]
    from haven.datamover.backends import MemoryBackend

    class Counting(MemoryBackend):
        ranges = 0

        def get_range(self, key: str, offset: int, length: int) -> bytes:
            if key.startswith("data/"):  # reads of packs, not of metadata objects
                Counting.ranges += 1
            return super().get_range(key, offset, length)

    repo = repo_factory(Counting())
    data = os.urandom(1024 * KiB)
    res = backup_volume(repo, BytesSource(data), volume="v", workers=1)
    packs = len(list(repo.backend.list("data/")))
    restore_volume(repo, res.manifest, tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == data
    assert Counting.ranges <= packs < 16
