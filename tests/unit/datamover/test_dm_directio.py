"""Direct I/O paths: aligned buffers, O_DIRECT writes/reads with buffered fallback, the
restore fast path (runs decoded into one buffer) and its corruption handling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haven.datamover import FileSource, Repository, backup_volume, restore_volume
from haven.datamover.backends import LocalBackend
from haven.datamover.codec import decode_chunk_into, encode_chunk
from haven.datamover.directio import (
    ALIGN,
    aligned_buffer,
    is_aligned,
    open_direct,
    pread_aligned,
    write_aligned,
)
from haven.datamover.errors import CorruptObject
from haven.datamover.packs import PackBuilder, open_trailer

from .conftest import make_repo

KiB = 1024


def test_aligned_buffer_and_is_aligned() -> None:
    buf = aligned_buffer(10_000)
    assert len(buf) % ALIGN == 0 and len(buf) >= 10_000
    assert is_aligned(memoryview(buf))
    assert not is_aligned(memoryview(buf)[1:])
    assert not is_aligned(b"abc")
    assert not is_aligned(memoryview(b"abc"))


@pytest.mark.parametrize("use_direct", [True, False])
@pytest.mark.parametrize("length", [ALIGN, 3 * ALIGN + 123, 77])
def test_write_and_read_aligned_round_trip(tmp_path: Path, use_direct: bool, length: int) -> None:
    path = tmp_path / "f"
    data = os.urandom(length)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    dfd = open_direct(path, os.O_RDWR) if use_direct else None
    try:
        os.ftruncate(fd, 4 * ALIGN + length)
        buf = aligned_buffer(length)
        buf[:length] = data
        write_aligned(dfd, fd, buf, length, ALIGN)
        back = aligned_buffer(length + 2 * ALIGN)
        view = pread_aligned(dfd, fd, back, ALIGN + 5, length - 5)
        assert bytes(view) == data[5:]
        # short at the end of the file, like pread
        end = pread_aligned(dfd, fd, back, 4 * ALIGN + length - 3, 100)
        assert len(end) == 3
    finally:
        os.close(fd)
        if dfd is not None:
            os.close(dfd)


def test_write_aligned_unaligned_offset_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    dfd = open_direct(path, os.O_RDWR)
    try:
        buf = aligned_buffer(ALIGN)
        buf[:ALIGN] = b"x" * ALIGN
        write_aligned(dfd, fd, buf, ALIGN, 3)  # not aligned: goes through fd
        assert os.pread(fd, ALIGN + 3, 0) == b"\0\0\0" + b"x" * ALIGN
    finally:
        os.close(fd)
        if dfd is not None:
            os.close(dfd)


def test_local_backend_large_objects_round_trip(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "r")
    big = os.urandom((1 << 20) + 4321)  # bytes: through the bounce buffer
    b.put("data/aa/x", big)
    aligned = aligned_buffer(len(big))
    aligned[: len(big)] = big
    b.put("data/aa/y", memoryview(aligned)[: len(big)])  # aligned view: no bounce
    assert b.get("data/aa/x") == big and b.get("data/aa/y") == big
    buf = aligned_buffer(len(big) + 2 * ALIGN)
    assert bytes(b.get_range_into("data/aa/y", 1000, len(big) - 2000, buf)) == big[1000:-1000]
    assert b.get_range("data/aa/x", 7, 10) == big[7:17]
    assert not [p for p in (tmp_path / "r" / "data" / "aa").iterdir() if p.name.startswith(".")]


def test_pack_builder_grows_past_capacity_and_seals(tmp_path: Path) -> None:
    repo = make_repo(LocalBackend(tmp_path / "r"))
    pb = PackBuilder(repo.keys, 64 * KiB, buffers=1)
    # one blob far larger than the buffer (rare path: the buffer is replaced)
    sealed = pb.add(b"\1" * 32, [b"a" * 100, os.urandom(300 * KiB)])
    assert sealed is not None
    entries = open_trailer(repo.keys, sealed.pack_id, bytes(sealed.data))
    assert [e.chunk_id for e in entries] == [b"\1" * 32]
    sealed.release()
    again = pb.add(b"\2" * 32, b"b" * (70 * KiB))  # the bigger buffer is reused
    assert again is not None
    again.release()


def test_decode_chunk_into_checks_everything(local_repo: Repository) -> None:
    keys = local_repo.keys
    for plain in (b"text " * 13_000, os.urandom(64 * KiB)):
        cid = keys.chunk_id(plain)
        blob = b"".join(encode_chunk(keys, cid, memoryview(plain), 1))
        out = aligned_buffer(len(plain))
        scratch = memoryview(aligned_buffer(len(plain) + 64))
        decode_chunk_into(keys, cid, memoryview(blob), memoryview(out)[: len(plain)], scratch, "w")
        assert out[: len(plain)] == plain
        with pytest.raises(CorruptObject):  # wrong expected length
            decode_chunk_into(
                keys, cid, memoryview(blob), memoryview(out)[: len(plain) - 1], scratch, "w"
            )
        bad = bytearray(blob)
        bad[-1] ^= 1
        with pytest.raises(CorruptObject):  # tag
            decode_chunk_into(
                keys, cid, memoryview(bytes(bad)), memoryview(out)[: len(plain)], scratch, "w"
            )
        with pytest.raises(CorruptObject):  # bound to its id
            decode_chunk_into(
                keys, b"\0" * 32, memoryview(blob), memoryview(out)[: len(plain)], scratch, "w"
            )


@pytest.mark.parametrize("direct", [True, False])
def test_restore_fast_path_sparse_unaligned_tail(
    tmp_path: Path, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(LocalBackend(tmp_path / "r", direct=direct))
    size = 40 * 64 * KiB + 777  # partial, unaligned last chunk
    img = tmp_path / "img"
    with open(img, "wb") as f:
        f.truncate(size)
        f.seek(0)
        f.write(os.urandom(5 * 64 * KiB))  # a run of raw chunks
        f.seek(8 * 64 * KiB)
        f.write(b"compressible " * 40_000)  # zstd chunks
        f.seek(size - 500)
        f.write(os.urandom(500))
    with FileSource(img) as src:
        res = backup_volume(repo, src, volume="v", workers=2)
    if not direct:  # the file system refuses O_DIRECT: everything goes through the cache
        monkeypatch.setattr("haven.datamover.blockio.open_direct", lambda *a, **k: None)
    out = tmp_path / "out"
    rs = restore_volume(repo, res.manifest.manifest_id, out)
    assert rs.verified and out.read_bytes() == img.read_bytes()
    assert rs.bytes_written == sum(
        min(64 * KiB, size - i * 64 * KiB) for i, c in enumerate(res.manifest.chunks) if c
    )
    assert os.stat(out).st_blocks * 512 < size  # holes stay holes


def test_restore_fast_path_rejects_tampered_blob(tmp_path: Path) -> None:
    repo = make_repo(LocalBackend(tmp_path / "r"))
    img = tmp_path / "img"
    img.write_bytes(os.urandom(4 * 64 * KiB))
    with FileSource(img) as src:
        res = backup_volume(repo, src, volume="v", workers=1)
    pack = next(p for p in (tmp_path / "r" / "data").rglob("*") if p.is_file())
    raw = bytearray(pack.read_bytes())
    raw[200] ^= 0xFF  # inside the first blob
    pack.write_bytes(bytes(raw))
    out = tmp_path / "out"
    with pytest.raises(CorruptObject):
        restore_volume(repo, res.manifest.manifest_id, out)
    # nothing was written: no destination, no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "r"]
