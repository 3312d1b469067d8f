"""Volume manifests: one per volume per recovery point, written last.

Object ``manifests/<manifest_id>``, meta-sealed with AD ``b"HVNM" || version ||
manifest_id``; plaintext is zstd of ``header_json || b"\\n" || ids`` where ``ids`` are
the 32-byte chunk ids of the non-zero chunks in volume order and the header lists the
zero runs ``[[first_chunk, count], ...]``. ``manifest_id`` is
``<UTC yyyymmddThhmmss.ffffffZ>-<16 hex>`` so listing sorts by time without decrypting.

The volume checksum is keyed BLAKE3 (id key) over ``b"HVNV" || u64le(size) ||
u32le(chunk_size) || id_0 || ... || id_n-1`` where a zero chunk contributes the id of
an all-zero chunk of its length. Since every chunk id is a keyed hash of the chunk's
bytes, this is a hash tree of the whole volume: restore recomputes it from the bytes
it writes or keeps, and incremental backups get it without re-reading unchanged chunks.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime

import zstandard

from haven.datamover.crypto import FORMAT_VERSION, KeyRing
from haven.datamover.errors import CorruptObject, UnsupportedFormat

MANIFEST_PREFIX = "manifests/"
ID_LEN = 32


@dataclass(slots=True)
class VolumeManifest:
    """A committed (or about to be committed) backup of one volume."""

    manifest_id: str
    volume: str
    point_id: str
    created: datetime
    size: int
    chunk_size: int
    chunks: list[bytes | None]  # None = all-zero chunk or hole
    checksum: str = ""
    parent: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def chunk_count(self) -> int:
        return len(self.chunks)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """(offset, length) of chunk ``index``; the last chunk may be short."""
        off = index * self.chunk_size
        return off, min(self.chunk_size, self.size - off)

    def referenced(self) -> set[bytes]:
        return {c for c in self.chunks if c is not None}


def chunk_count(size: int, chunk_size: int) -> int:
    return (size + chunk_size - 1) // chunk_size


def new_manifest_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{os.urandom(8).hex()}"


def manifest_key(manifest_id: str) -> str:
    return MANIFEST_PREFIX + manifest_id


def volume_checksum(keys: KeyRing, size: int, chunk_size: int, chunks: list[bytes | None]) -> str:
    zero_ids: dict[int, bytes] = {}
    h = keys.id_hasher()
    h.update(b"HVNV" + struct.pack("<QI", size, chunk_size))
    for i, cid in enumerate(chunks):
        if cid is None:
            length = min(chunk_size, size - i * chunk_size)
            cid = zero_ids.get(length)
            if cid is None:
                cid = zero_ids[length] = keys.chunk_id(bytes(length))
        h.update(cid)
    return h.hexdigest()


def _zero_runs(chunks: list[bytes | None]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i, c in enumerate(chunks):
        if c is None:
            if runs and runs[-1][0] + runs[-1][1] == i:
                runs[-1][1] += 1
            else:
                runs.append([i, 1])
    return runs


def _ad(manifest_id: str) -> bytes:
    return b"HVNM" + bytes((FORMAT_VERSION,)) + manifest_id.encode()


def seal_manifest(keys: KeyRing, m: VolumeManifest) -> bytes:
    header = {
        "version": FORMAT_VERSION,
        "volume": m.volume,
        "point_id": m.point_id,
        "created": m.created.isoformat(),
        "size": m.size,
        "chunk_size": m.chunk_size,
        "checksum": m.checksum,
        "parent": m.parent,
        "labels": m.labels,
        "zero_runs": _zero_runs(m.chunks),
    }
    ids = b"".join(c for c in m.chunks if c is not None)
    plain = json.dumps(header, sort_keys=True).encode() + b"\n" + ids
    return keys.seal_meta(zstandard.ZstdCompressor(level=3).compress(plain), _ad(m.manifest_id))


def open_manifest(keys: KeyRing, manifest_id: str, blob: bytes) -> VolumeManifest:
    where = manifest_key(manifest_id)
    raw = keys.open_meta(blob, _ad(manifest_id), where)
    try:
        plain = zstandard.ZstdDecompressor().decompress(raw)
        nl = plain.index(b"\n")
        header = json.loads(plain[:nl])
    except (zstandard.ZstdError, ValueError) as exc:
        raise CorruptObject(where, f"undecodable manifest ({exc})") from None
    if header.get("version") != FORMAT_VERSION:
        raise UnsupportedFormat(f"{where}: manifest version {header.get('version')}")
    size, chunk_size = int(header["size"]), int(header["chunk_size"])
    n = chunk_count(size, chunk_size)
    chunks: list[bytes | None] = [b""] * n
    for start, count in header["zero_runs"]:
        chunks[start : start + count] = [None] * count
    ids = memoryview(plain)[nl + 1 :]
    pos = 0
    for i in range(n):
        if chunks[i] is not None:
            chunks[i] = bytes(ids[pos : pos + ID_LEN])
            pos += ID_LEN
    if pos != len(ids) or any(c is not None and len(c) != ID_LEN for c in chunks):
        raise CorruptObject(where, "chunk table does not match the header")
    return VolumeManifest(
        manifest_id=manifest_id,
        volume=header["volume"],
        point_id=header["point_id"],
        created=datetime.fromisoformat(header["created"]).astimezone(UTC),
        size=size,
        chunk_size=chunk_size,
        chunks=chunks,
        checksum=header["checksum"],
        parent=header.get("parent"),
        labels=dict(header.get("labels") or {}),
    )
