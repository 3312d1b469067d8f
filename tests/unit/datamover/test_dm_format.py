from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haven.datamover.crypto import KeyRing
from haven.datamover.errors import CorruptObject, InvalidArgument
from haven.datamover.manifest import (
    VolumeManifest,
    new_manifest_id,
    open_manifest,
    seal_manifest,
    volume_checksum,
)
from haven.datamover.packs import PackBuilder, open_index, open_trailer
from haven.datamover.repository import validate_chunk_size

KEYS = KeyRing(os.urandom(32))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.binary(min_size=32, max_size=32)), max_size=80),
    st.integers(0, 65535),
)
def test_manifest_roundtrip(chunks: list[bytes | None], tail: int) -> None:
    cs = 65536
    size = max(0, len(chunks) - 1) * cs + (tail or cs) if chunks else 0
    now = datetime.now(UTC)
    m = VolumeManifest(
        new_manifest_id(now),
        "vol/ü",
        "rp 1",
        now,
        size,
        cs,
        chunks,
        volume_checksum(KEYS, size, cs, chunks),
        None,
        {"k": "v"},
    )
    back = open_manifest(KEYS, m.manifest_id, seal_manifest(KEYS, m))
    assert back == m


def test_manifest_bound_to_its_id() -> None:
    now = datetime.now(UTC)
    m = VolumeManifest(new_manifest_id(now), "v", "p", now, 10, 65536, [b"x" * 32], "c")
    blob = seal_manifest(KEYS, m)
    with pytest.raises(CorruptObject):
        open_manifest(KEYS, new_manifest_id(now), blob)  # renamed object is rejected


def test_checksum_zero_chunk_equals_explicit_zero_id() -> None:
    zero = KEYS.chunk_id(bytes(65536))
    assert volume_checksum(KEYS, 131072, 65536, [None, None]) == volume_checksum(
        KEYS, 131072, 65536, [zero, zero]
    )


def test_pack_trailer_matches_index_and_buffers_are_reused() -> None:
    builder = PackBuilder(KEYS, 100_000, buffers=1)
    sealed = None
    n = 0
    while sealed is None:
        n += 1
        sealed = builder.add(bytes([n]) * 32, [b"h" * 13, os.urandom(20_000)])
    data = bytes(sealed.data)
    entries = open_trailer(KEYS, sealed.pack_id, data)
    assert entries == open_index(KEYS, sealed.pack_id, sealed.index_blob) == sealed.entries
    assert len(entries) == n and data[entries[1].offset : entries[1].offset + 13] == b"h" * 13
    sealed.release()
    again = builder.add(b"z" * 32, b"tiny")  # the single buffer came back
    assert again is None and builder.flush() is not None


@pytest.mark.parametrize("bad", [1000, 32 * 1024, 3 << 20, 32 << 20])
def test_chunk_size_limits(bad: int) -> None:
    with pytest.raises(InvalidArgument):
        validate_chunk_size(bad)
    for good in (64 * 1024, 1 << 20, 16 << 20):
        validate_chunk_size(good)
