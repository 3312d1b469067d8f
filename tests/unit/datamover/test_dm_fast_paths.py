"""Restore's read windows: chunks stored in a pack out of volume order (as a full
backup's parallel workers store them) are fetched with few reads and restored exactly."""

from __future__ import annotations

import os
from pathlib import Path

from tests.unit.datamover.sources import BytesSource

from haven.datamover import backup_volume, restore_volume
from haven.datamover.packs import Location
from haven.datamover.restore import _MAX_GAP, _windows

KiB = 1024
CHUNK = 64 * KiB


def _loc(pack: str, offset: int, length: int) -> Location:
    return Location(pack, offset, length)


def test_windows_merge_out_of_order_blobs_of_one_pack() -> None:
    items = [(0, _loc("p", 300, 100)), (1, _loc("p", 0, 100)), (2, _loc("p", 150, 100))]
    wins = _windows(items, capacity=10_000)
    assert len(wins) == 1
    assert [i for i, _ in wins[0]] == [1, 2, 0]  # pack order; first has the lowest offset


def test_windows_split_on_pack_gap_and_capacity() -> None:
    items = [
        (0, _loc("a", 0, 100)),
        (1, _loc("b", 0, 100)),  # other pack
        (2, _loc("a", 100 + _MAX_GAP + 1, 100)),  # too far from the previous blob
        (3, _loc("a", 100, 50)),
    ]
    wins = _windows(items, capacity=10_000)
    assert [[i for i, _ in w] for w in wins] == [[0, 3], [2], [1]]
    # capacity bounds the span of a window
    items = [(k, _loc("a", k * 100, 100)) for k in range(5)]
    wins = _windows(items, capacity=250)
    assert [[i for i, _ in w] for w in wins] == [[0, 1], [2, 3], [4]]


def test_windows_allow_the_same_blob_twice() -> None:
    items = [(0, _loc("a", 0, 100)), (1, _loc("a", 0, 100)), (2, _loc("a", 100, 100))]
    wins = _windows(items, capacity=10_000)
    assert len(wins) == 1 and len(wins[0]) == 3


def test_restore_of_chunks_stored_out_of_volume_order(repo_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from haven.datamover.backends import LocalBackend

    class Counting(LocalBackend):
        reads = 0

        def get_range_into(self, key: str, offset: int, length: int, buf: object) -> memoryview:
            Counting.reads += 1
            return super().get_range_into(key, offset, length, buf)

    repo = repo_factory(Counting(tmp_path / "repo"))
    blocks = [os.urandom(CHUNK) for _ in range(8)]
    backup_volume(repo, BytesSource(b"".join(blocks)), volume="a", workers=1)
    # The same chunks in another order (and one twice): every chunk deduplicates, so the
    # manifest points into the first pack out of order.
    order = [5, 2, 7, 0, 0, 3, 6, 1, 4]
    data = b"".join(blocks[i] for i in order)
    res = backup_volume(repo, BytesSource(data), volume="b", workers=1)
    assert res.stats.chunks_new == 0
    packs = len(list(repo.backend.list("data/")))
    out = tmp_path / "out"
    Counting.reads = 0
    rs = restore_volume(repo, res.manifest, out)
    # one read per pack the run touches, not one per back-to-back stretch of chunks
    assert 1 <= Counting.reads <= packs < len(order)
    assert rs.verified and rs.chunks_written == len(order)
    assert out.read_bytes() == data


def test_chunk_written_into_a_buffer_decodes_like_encode_chunk() -> None:
    from haven.datamover.codec import Codec, decode_chunk, encode_chunk_writer
    from haven.datamover.crypto import KeyRing
    from haven.datamover.packs import PackBuilder, open_trailer

    keys = KeyRing(os.urandom(32))
    builder = PackBuilder(keys, 1 << 20)
    chunks = [os.urandom(CHUNK), b"text " * (CHUNK // 5)]  # stored raw, then zstd
    for data in chunks:
        cid = keys.chunk_id(data)
        length, write = encode_chunk_writer(keys, cid, memoryview(data), 1)
        assert builder.add_written(cid, length, write) is None
    sealed = builder.flush()
    assert sealed is not None
    pack = bytes(sealed.data)
    entries = open_trailer(keys, sealed.pack_id, pack)
    assert [pack[e.offset] for e in entries] == [Codec.RAW, Codec.ZSTD]
    for e, data in zip(entries, chunks, strict=True):
        blob = pack[e.offset : e.offset + e.length]
        assert decode_chunk(keys, e.chunk_id, blob, "test") == data
