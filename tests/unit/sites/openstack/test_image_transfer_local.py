"""The local halves of the OpenStack image data path: the sparse temporary file and the
reader/writer objects the data mover sees (no cloud: the cloud steps are in
tests/integration/openstack/test_openstack_repo_path.py)."""

from __future__ import annotations

import os
import threading

import pytest

from haven.domain.extents import Extent
from haven.sites.base import PointDiskReader, VolumeWriter
from haven.sites.openstack.sparse import HOLE_BLOCK, SparseFile
from haven.sites.openstack.transfer import ImageReader, ImageWriter, TransferFigures

MiB = 1024 * 1024


def _stream(data: bytes, piece: int) -> list[bytes]:
    return [data[i : i + piece] for i in range(0, len(data), piece)]


def _allocated_bytes(path: str) -> int:
    return os.stat(path).st_blocks * 512


def test_fill_keeps_zero_blocks_as_holes(tmp_path: os.PathLike[str]) -> None:
    size = 8 * MiB
    content = bytearray(size)
    content[100:200] = b"a" * 100  # first block
    content[3 * MiB : 3 * MiB + HOLE_BLOCK + 1] = b"b" * (HOLE_BLOCK + 1)  # spans 2 blocks
    content[size - 5 :] = b"tail!"
    with SparseFile(size, str(tmp_path)) as f:
        # odd piece sizes: block boundaries must not depend on how the stream is cut
        assert f.fill_from(_stream(bytes(content), 12345)) == size
        buf = bytearray(size)
        assert f.pread(0, buf) == size
        assert buf == content
        ext = f.allocated()
        assert ext[0] == Extent(0, HOLE_BLOCK)
        assert Extent(3 * MiB, 2 * HOLE_BLOCK) in ext
        assert ext[-1].end == size
        covered = sum(e.length for e in ext)
        assert covered == 4 * HOLE_BLOCK
        assert _allocated_bytes(f.path) <= 4 * HOLE_BLOCK + 64 * 1024  # fs may round up


def test_fill_rejects_a_stream_longer_than_the_volume(tmp_path: os.PathLike[str]) -> None:
    with SparseFile(MiB, str(tmp_path)) as f, pytest.raises(ValueError, match="longer"):
        f.fill_from([bytes(MiB), b"x"])


def test_all_zero_stream_allocates_nothing(tmp_path: os.PathLike[str]) -> None:
    with SparseFile(4 * MiB, str(tmp_path)) as f:
        assert f.fill_from([bytes(MiB)] * 4) == 4 * MiB
        assert f.allocated() == []
        assert _allocated_bytes(f.path) == 0


def test_close_removes_the_file(tmp_path: os.PathLike[str]) -> None:
    f = SparseFile(MiB, str(tmp_path))
    path = f.path
    assert os.path.exists(path)
    f.close()
    f.close()  # idempotent
    assert not os.path.exists(path)


def test_zero_punches_and_iter_blocks_reads_everything(tmp_path: os.PathLike[str]) -> None:
    size = 3 * MiB + 7
    data = os.urandom(size)
    with SparseFile(size, str(tmp_path)) as f:
        f.pwrite(0, data)
        f.zero(MiB, MiB)
        got = b"".join(f.iter_blocks(MiB))
        assert len(got) == size
        assert got == data[:MiB] + bytes(MiB) + data[2 * MiB :]
        with pytest.raises(ValueError, match="outside"):
            f.pwrite(size - 1, b"xy")


def test_reader_is_a_point_disk_reader_and_counts(tmp_path: os.PathLike[str]) -> None:
    fig = TransferFigures(image_bytes_downloaded=4 * MiB)
    with SparseFile(4 * MiB, str(tmp_path)) as f:
        f.pwrite(MiB, b"z" * 10)
        r = ImageReader(f, fig)
        assert isinstance(r, PointDiskReader)
        assert r.changed_extents() is None
        assert r.allocated() == [Extent(MiB, f.allocated()[0].length)]

        def read(off: int) -> None:
            buf = bytearray(MiB)
            assert r.readinto(off, buf) == MiB

        threads = [threading.Thread(target=read, args=(i * MiB,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert r.bytes_read == 4 * MiB and r.image_bytes_downloaded == 4 * MiB


def test_writer_is_fresh_until_it_loads(tmp_path: os.PathLike[str]) -> None:
    loads: list[int] = []

    def load(into: SparseFile) -> None:
        loads.append(1)
        into.pwrite(0, b"old-content")

    with SparseFile(2 * MiB, str(tmp_path)) as f:
        w = ImageWriter(f, TransferFigures(), load)
        assert isinstance(w, VolumeWriter)
        assert w.fresh and not w.dirty
        buf = bytearray(11)
        assert w.readinto(0, buf) == 11 and bytes(buf) == b"old-content"
        assert loads == [1] and not w.fresh  # now a copy of the volume, not zeros
        w.readinto(0, buf)
        assert loads == [1]  # loaded once
        assert not w.dirty  # reading alone never re-images the volume


def test_writer_after_writes_never_loads(tmp_path: os.PathLike[str]) -> None:
    def load(into: SparseFile) -> None:
        raise AssertionError("a writer that was written to must not load the old content")

    with SparseFile(2 * MiB, str(tmp_path)) as f:
        w = ImageWriter(f, TransferFigures(), load)
        w.write(5, b"new")
        w.zero(MiB, MiB)
        buf = bytearray(8)
        w.readinto(0, buf)
        assert bytes(buf) == b"\0" * 5 + b"new"
        assert w.dirty and w.fresh and w.bytes_written == 3


def test_writer_checks_once_before_the_first_write_and_never_for_reads(
    tmp_path: os.PathLike[str],
) -> None:
    checks: list[int] = []

    def refuse() -> None:
        checks.append(1)
        raise RuntimeError("volume in use")

    with SparseFile(MiB, str(tmp_path)) as f:
        w = ImageWriter(f, TransferFigures(), lambda into: None, refuse)
        w.readinto(0, bytearray(16))  # reading needs no check
        assert checks == []
        with pytest.raises(RuntimeError, match="in use"):
            w.write(0, b"x")
        assert not w.dirty and f.allocated() == []  # nothing was written
        ok: list[int] = []
        w2 = ImageWriter(f, TransferFigures(), lambda into: None, lambda: ok.append(1))
        w2.write(0, b"a")
        w2.zero(0, 1)
        w2.write(1, b"b")
        assert ok == [1]
