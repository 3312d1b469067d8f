"""Packs: many chunk blobs in one object, plus the per-pack index.

Pack object ``data/<pp>/<pack_id>`` (``pack_id`` = 32 random hex digits, ``pp`` its first
two)::

    b"HVNPACK1" || blob_0 || ... || blob_n-1 || trailer || u32le(len(trailer))

``trailer`` is a meta-sealed table of entries (AD ``b"HVNT" || version || pack_id``).
The same table, sealed with AD ``b"HVNI" || version || pack_id``, is written as
``index/<pack_id>`` *after* the pack: an index object therefore always describes a
complete pack, and a pack without an index object is an orphan of a crashed writer that
prune may delete. Entry: ``chunk_id(32) || u64le(offset) || u32le(length)``; offsets
are from the start of the pack object and ``length`` covers the whole chunk blob.
"""

from __future__ import annotations

import mmap
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from haven.datamover.crypto import FORMAT_VERSION, KeyRing
from haven.datamover.directio import aligned_buffer
from haven.datamover.errors import CorruptObject

PACK_MAGIC = b"HVNPACK1"
_ENTRY = struct.Struct("<32sQI")
_U32 = struct.Struct("<I")
PACK_PREFIX = "data/"
INDEX_PREFIX = "index/"
# An index object holds one 44-byte entry per chunk of one pack; 64 MiB is far above any
# real pack's (a 32 MiB pack of 64 KiB chunks has ~500 entries) and refuses a crafted one.
MAX_INDEX_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class PackEntry:
    chunk_id: bytes
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Location:
    pack_id: str
    offset: int
    length: int


def new_pack_id() -> str:
    return os.urandom(16).hex()


def pack_key(pack_id: str) -> str:
    return f"{PACK_PREFIX}{pack_id[:2]}/{pack_id}"


def index_key(pack_id: str) -> str:
    return f"{INDEX_PREFIX}{pack_id}"


def pack_id_of_key(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def encode_entries(entries: Iterable[PackEntry]) -> bytes:
    return b"".join(_ENTRY.pack(e.chunk_id, e.offset, e.length) for e in entries)


def decode_entries(raw: bytes, where: str) -> list[PackEntry]:
    if len(raw) % _ENTRY.size:
        raise CorruptObject(where, "entry table has a bad length")
    return [PackEntry(c, o, n) for c, o, n in _ENTRY.iter_unpack(raw)]


def _ad(tag: bytes, pack_id: str) -> bytes:
    return tag + bytes((FORMAT_VERSION,)) + pack_id.encode()


def seal_index(keys: KeyRing, pack_id: str, entries: list[PackEntry]) -> bytes:
    return keys.seal_meta(encode_entries(entries), _ad(b"HVNI", pack_id))


def open_index(keys: KeyRing, pack_id: str, blob: bytes) -> list[PackEntry]:
    where = index_key(pack_id)
    return decode_entries(keys.open_meta(blob, _ad(b"HVNI", pack_id), where), where)


def open_trailer(keys: KeyRing, pack_id: str, pack: bytes) -> list[PackEntry]:
    """Entries from a whole pack object's trailer (used by check and repair)."""
    where = pack_key(pack_id)
    if len(pack) < len(PACK_MAGIC) + _U32.size or not pack.startswith(PACK_MAGIC):
        raise CorruptObject(where, "not a pack")
    (tlen,) = _U32.unpack_from(pack, len(pack) - _U32.size)
    start = len(pack) - _U32.size - tlen
    if start < len(PACK_MAGIC):
        raise CorruptObject(where, "bad trailer length")
    raw = keys.open_meta(
        memoryview(pack)[start : len(pack) - _U32.size], _ad(b"HVNT", pack_id), where
    )
    return decode_entries(raw, where)


@dataclass(slots=True)
class SealedPack:
    """A finished pack. ``data`` may be a view of a reused buffer: call :meth:`release`
    once it has been uploaded (and not before)."""

    pack_id: str
    data: bytes | memoryview
    entries: list[PackEntry]
    index_blob: bytes
    _buffer: mmap.mmap | None = None
    _pool: queue.SimpleQueue[mmap.mmap] | None = None

    def release(self) -> None:
        if self._buffer is not None and self._pool is not None:
            self.data = b""
            self._pool.put(self._buffer)
            self._buffer = None


class PackBuilder:
    """Accumulates chunk blobs into a pack; thread-safe. ``add`` returns a sealed pack
    when the target size is reached; the caller uploads it (pack first, then index) and
    releases it. Pack buffers are preallocated and reused (fresh multi-MiB allocations
    page-fault on every pack); at most ``buffers`` packs are sealed but not released
    at a time, further ``add`` calls wait for a release."""

    def __init__(self, keys: KeyRing, target_size: int, *, buffers: int = 3) -> None:
        self._keys = keys
        self._target = target_size
        self._lock = threading.Lock()
        # Buffers are anonymous mmaps: page aligned (a local backend writes them with
        # O_DIRECT without a bounce copy) and faulted in only as far as they are
        # written (a small incremental touches a fraction of a pack, not 3 x 36 MiB).
        self._pool: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._capacity = target_size + (target_size >> 3) + 4096
        self._unmade = buffers
        self._buf: mmap.mmap | None = None
        self._reset()

    def _reset(self) -> None:
        self._buf = None
        self._size = 0
        self._entries: list[PackEntry] = []

    def _take(self) -> mmap.mmap:
        if self._unmade > 0:
            try:
                return self._pool.get_nowait()
            except queue.Empty:
                self._unmade -= 1
                return aligned_buffer(self._capacity)
        return self._pool.get()

    def _room(self, n: int) -> mmap.mmap:
        """The current buffer (started if needed) with room for ``n`` more bytes."""
        if self._buf is None:
            self._buf = self._take()
            self._buf[: len(PACK_MAGIC)] = PACK_MAGIC
            self._size = len(PACK_MAGIC)
        end = self._size + n
        if end > len(self._buf):  # rare: many tiny entries or a huge last blob
            bigger = aligned_buffer(end + (end >> 2))
            bigger[: self._size] = self._buf[: self._size]
            self._buf = bigger  # replaces the smaller buffer in the pool on release
        return self._buf

    def _append(self, part: bytes | memoryview) -> None:
        buf = self._room(len(part))
        end = self._size + len(part)
        buf[self._size : end] = part
        self._size = end

    def add_written(
        self, chunk_id: bytes, length: int, write: Callable[[memoryview], None]
    ) -> SealedPack | None:
        """Like :meth:`add`, for a blob of ``length`` bytes that ``write`` puts straight
        into the pack's buffer (given exactly ``length`` bytes; see
        :func:`haven.datamover.codec.encode_chunk_writer`). If ``write`` raises, nothing
        is added."""
        with self._lock:
            buf = self._room(length)
            start = self._size
            view = memoryview(buf)[start : start + length]
            try:
                write(view)
            finally:
                view.release()
            self._size = start + length
            self._entries.append(PackEntry(chunk_id, start, length))
            if self._size >= self._target:
                return self._seal()
            return None

    def add(self, chunk_id: bytes, blob: bytes | list[bytes]) -> SealedPack | None:
        """Append one chunk blob (bytes, or its parts in order)."""
        parts = [blob] if isinstance(blob, bytes) else blob
        with self._lock:
            if self._buf is None:
                self._append(b"")
            start = self._size
            for part in parts:
                self._append(part)
            self._entries.append(PackEntry(chunk_id, start, self._size - start))
            if self._size >= self._target:
                return self._seal()
            return None

    def flush(self) -> SealedPack | None:
        with self._lock:
            return self._seal() if self._entries else None

    def _seal(self) -> SealedPack:
        pack_id = new_pack_id()
        trailer = self._keys.seal_meta(encode_entries(self._entries), _ad(b"HVNT", pack_id))
        self._append(trailer)
        self._append(_U32.pack(len(trailer)))
        buf = self._buf
        assert buf is not None
        sealed = SealedPack(
            pack_id,
            memoryview(buf)[: self._size],
            self._entries,
            seal_index(self._keys, pack_id, self._entries),
            buf,
            self._pool,
        )
        self._reset()
        return sealed


class ChunkIndex:
    """In-memory map chunk id -> location, built from ``index/`` objects. Thread-safe.
    A chunk may live in several packs (two writers raced); the first one seen wins and
    every pack's entries are kept so prune knows what each pack holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.locations: dict[bytes, Location] = {}
        self.packs: dict[str, list[PackEntry]] = {}

    def add_pack(self, pack_id: str, entries: list[PackEntry]) -> None:
        with self._lock:
            self.packs[pack_id] = entries
            for e in entries:
                self.locations.setdefault(e.chunk_id, Location(pack_id, e.offset, e.length))

    def get(self, chunk_id: bytes) -> Location | None:
        return self.locations.get(chunk_id)

    def __contains__(self, chunk_id: bytes) -> bool:
        return chunk_id in self.locations

    def __len__(self) -> int:
        return len(self.locations)
