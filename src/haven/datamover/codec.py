"""Chunk encoding: compress (or not), then encrypt, bound to the chunk id.

A stored chunk blob is ``codec(1) || nonce(12) || ciphertext || tag(16)`` where
``codec`` is :class:`Codec` (0 = raw, 1 = zstd). The associated data is
``b"HVNC" || version || codec || chunk_id``: the codec byte is authenticated, the chunk
id binds the blob to its index entry. Decoding re-hashes the plaintext with the id key
and compares with the id, so a blob that decrypts but is not the chunk asked for is
still rejected.

zstd contexts are not thread-safe, so each worker thread keeps its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from enum import IntEnum

import zstandard

from haven.datamover.crypto import FORMAT_VERSION, NONCE_LEN, OVERHEAD, KeyRing
from haven.datamover.errors import CorruptObject


class Codec(IntEnum):
    RAW = 0
    ZSTD = 1


# Store raw unless zstd saves at least 1/32 of the chunk: decompression is not free and
# incompressible data (already compressed or encrypted files) gains nothing.
_MIN_SAVING_SHIFT = 5

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    comps: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "comps", None)
    if comps is None:
        comps = {}
        _local.comps = comps
    comp = comps.get(level)
    if comp is None:
        comp = zstandard.ZstdCompressor(level=level, write_content_size=True)
        comps[level] = comp
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "dec", None)
    if dec is None:
        dec = zstandard.ZstdDecompressor()
        _local.dec = dec
    return dec


def chunk_ad(codec: int, chunk_id: bytes) -> bytes:
    return b"HVNC" + bytes((FORMAT_VERSION, codec)) + chunk_id


def encode_chunk(keys: KeyRing, chunk_id: bytes, data: memoryview, level: int) -> list[bytes]:
    """Compress-if-it-pays and encrypt ``data`` (the plaintext chunk). Returns the blob
    as parts (``codec || nonce`` and ``ciphertext || tag``) to spare a copy."""
    codec = Codec.RAW
    payload: bytes | memoryview = data
    if level > 0:
        packed = _compressor(level).compress(data)
        if len(packed) <= len(data) - (len(data) >> _MIN_SAVING_SHIFT):
            codec, payload = Codec.ZSTD, packed
    nonce, sealed = keys.seal_data_parts(payload, chunk_ad(codec, chunk_id))
    return [bytes((codec,)) + nonce, sealed]


def encode_chunk_writer(
    keys: KeyRing, chunk_id: bytes, data: memoryview, level: int
) -> tuple[int, Callable[[memoryview], None]]:
    """:func:`encode_chunk` without building the blob: compresses (if it pays) now and
    returns the blob's length and a function that encrypts straight into a buffer of
    exactly that length (a pack's), sparing a fresh ciphertext object and a copy of it.
    The blob written is byte-for-byte the format of :func:`encode_chunk`."""
    codec = Codec.RAW
    payload: bytes | memoryview = data
    if level > 0:
        packed = _compressor(level).compress(data)
        if len(packed) <= len(data) - (len(data) >> _MIN_SAVING_SHIFT):
            codec, payload = Codec.ZSTD, packed
    ad = chunk_ad(codec, chunk_id)

    def write(out: memoryview) -> None:
        nonce = os.urandom(NONCE_LEN)
        out[0] = codec
        out[1 : 1 + NONCE_LEN] = nonce
        keys.seal_data_into(nonce, payload, ad, out[1 + NONCE_LEN :])

    return 1 + OVERHEAD + len(payload), write


def decode_chunk_into(
    keys: KeyRing,
    chunk_id: bytes,
    blob: memoryview,
    out: memoryview,
    scratch: memoryview,
    where: str,
) -> None:
    """:func:`decode_chunk` into ``out``, which must be exactly the chunk's length
    (known from the manifest); ``scratch`` (at least ``len(blob)`` bytes) holds the
    compressed plaintext. Verifies the tag, the length and the content hash; on failure
    raises :class:`CorruptObject` and ``out`` holds garbage that must not be used."""
    if len(blob) < 1:
        raise CorruptObject(where, "empty chunk blob")
    codec = blob[0]
    if codec == Codec.RAW:
        if len(blob) - 1 - OVERHEAD != len(out):
            raise CorruptObject(where, f"chunk {chunk_id.hex()[:16]} has the wrong length")
        keys.open_data_into(blob[1:], chunk_ad(codec, chunk_id), out, where)
    elif codec == Codec.ZSTD:
        n = keys.open_data_into(blob[1:], chunk_ad(codec, chunk_id), scratch, where)
        packed = scratch[:n]
        try:
            if zstandard.frame_content_size(packed) != len(out):
                raise CorruptObject(where, f"chunk {chunk_id.hex()[:16]} has the wrong length")
            reader = _decompressor().stream_reader(packed, read_across_frames=False)
            got = 0
            while got < len(out):
                k = reader.readinto(out[got:])
                if k == 0:
                    break
                got += k
        except zstandard.ZstdError as exc:
            raise CorruptObject(where, f"zstd: {exc}") from None
        if got != len(out):
            raise CorruptObject(where, f"chunk {chunk_id.hex()[:16]} has the wrong length")
    else:
        raise CorruptObject(where, f"unknown codec {codec}")
    if keys.chunk_id(out) != chunk_id:
        raise CorruptObject(where, f"content hash mismatch for chunk {chunk_id.hex()[:16]}")


def decode_chunk(keys: KeyRing, chunk_id: bytes, blob: bytes | memoryview, where: str) -> bytes:
    """Inverse of :func:`encode_chunk`; verifies the tag and the content hash."""
    if len(blob) < 1:
        raise CorruptObject(where, "empty chunk blob")
    mv = memoryview(blob)
    codec = mv[0]
    if codec not in (Codec.RAW, Codec.ZSTD):
        raise CorruptObject(where, f"unknown codec {codec}")
    plain = keys.open_data(mv[1:], chunk_ad(codec, chunk_id), where)
    if codec == Codec.ZSTD:
        try:
            plain = _decompressor().decompress(plain)
        except zstandard.ZstdError as exc:
            raise CorruptObject(where, f"zstd: {exc}") from None
    if keys.chunk_id(plain) != chunk_id:
        raise CorruptObject(where, f"content hash mismatch for chunk {chunk_id.hex()[:16]}")
    return plain
