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
# Bounds checked before a manifest is parsed: 2^25 chunks (32 TiB at 1 MiB chunks) and a
# header of at most 1 MiB; a larger object is refused as corrupt, never loaded.
MAX_CHUNKS = 1 << 25
MAX_HEADER = 1 << 20
MAX_MANIFEST_PLAIN = MAX_HEADER + MAX_CHUNKS * ID_LEN
MAX_MANIFEST_BYTES = MAX_MANIFEST_PLAIN + 4096  # zstd of random ids does not shrink
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 64 * 1024, 16 << 20


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
    """Decrypt and parse a manifest. Anything malformed raises :class:`CorruptObject`
    (never another exception): the header's fields are type- and range-checked and the
    chunk table must match them exactly."""
    from haven.datamover.heads import bounded_decompress  # (heads imports nothing of ours)

    where = manifest_key(manifest_id)
    raw = keys.open_meta(blob, _ad(manifest_id), where)
    plain = bounded_decompress(raw, MAX_MANIFEST_PLAIN, where)
    try:
        nl = plain.index(b"\n", 0, MAX_HEADER)
        header = json.loads(plain[:nl])
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        if header.get("version") != FORMAT_VERSION:
            raise UnsupportedFormat(f"{where}: manifest version {header.get('version')!r}")
        m = _from_header(manifest_id, header, memoryview(plain)[nl + 1 :])
    except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError) as exc:
        raise CorruptObject(where, f"undecodable manifest ({type(exc).__name__}: {exc})") from None
    return m


def _str_dict(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("labels must map strings to strings")
    return dict(value)


def _from_header(manifest_id: str, header: dict[str, object], ids: memoryview) -> VolumeManifest:
    size, chunk_size = header["size"], header["chunk_size"]
    volume, point_id, checksum = header["volume"], header["point_id"], header["checksum"]
    parent, created = header.get("parent"), header["created"]
    if type(size) is not int or type(chunk_size) is not int:
        raise TypeError("size and chunk_size must be integers")
    if not all(isinstance(v, str) for v in (volume, point_id, checksum, created)):
        raise TypeError("volume, point_id, checksum and created must be strings")
    if parent is not None and not isinstance(parent, str):
        raise TypeError("parent must be a string")
    if chunk_size & (chunk_size - 1) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError("chunk size out of range")
    if not 0 <= size <= MAX_CHUNKS * chunk_size:
        raise ValueError("volume size out of range")
    n = chunk_count(size, chunk_size)
    chunks: list[bytes | None] = [b""] * n
    runs = header["zero_runs"]
    if not isinstance(runs, list):
        raise TypeError("zero_runs must be a list")
    for run in runs:
        if not (isinstance(run, list) and len(run) == 2 and all(type(v) is int for v in run)):
            raise TypeError("a zero run is [first_chunk, count]")
        start, count = run
        if not (start >= 0 and count > 0 and start + count <= n):
            raise ValueError("zero run out of range")
        chunks[start : start + count] = [None] * count
    pos = 0
    for i in range(n):
        if chunks[i] is not None:
            chunks[i] = bytes(ids[pos : pos + ID_LEN])
            pos += ID_LEN
    if pos != len(ids) or any(c is not None and len(c) != ID_LEN for c in chunks):
        raise ValueError("chunk table does not match the header")
    assert isinstance(volume, str) and isinstance(point_id, str)  # checked above
    assert isinstance(checksum, str) and isinstance(created, str)
    return VolumeManifest(
        manifest_id=manifest_id,
        volume=volume,
        point_id=point_id,
        created=datetime.fromisoformat(created).astimezone(UTC),
        size=size,
        chunk_size=chunk_size,
        chunks=chunks,
        checksum=checksum,
        parent=parent,
        labels=_str_dict(header.get("labels")),
    )
