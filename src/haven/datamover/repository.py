"""The repository: keys, config, chunk index, packs and manifests on a backend.

Layout on the backend (see docs/repository-format.md)::

    keys/<name>            plaintext scrypt key envelope (absent with a key file)
    config                 meta-sealed JSON: format version, repo id, chunk/pack size...
    data/<pp>/<pack_id>    packs of encrypted chunk blobs
    index/<pack_id>        meta-sealed entry table of one pack, written after the pack
    manifests/<id>         meta-sealed volume manifests, written last
    locks/<lock_id>        meta-sealed lock records

Thread-safety: after ``open``, reading methods may be called from many threads; the
index is rebuilt only by :meth:`reload_index`, which callers run under a lock.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from haven.datamover.backends.base import Backend, ObjectNotFound
from haven.datamover.codec import decode_chunk
from haven.datamover.crypto import (
    FORMAT_VERSION,
    KeyRing,
    ScryptParams,
    new_master_key,
    unwrap_master_key,
    wrap_master_key,
)
from haven.datamover.errors import (
    CorruptObject,
    InvalidArgument,
    KeyMissing,
    ManifestNotFound,
    RepositoryExists,
    RepositoryNotFound,
    UnsupportedFormat,
    WrongKey,
)
from haven.datamover.locks import LockKind, LockPolicy, RepoLock
from haven.datamover.manifest import (
    MANIFEST_PREFIX,
    VolumeManifest,
    manifest_key,
    open_manifest,
    seal_manifest,
)
from haven.datamover.packs import (
    INDEX_PREFIX,
    ChunkIndex,
    Location,
    SealedPack,
    index_key,
    open_index,
    pack_key,
)

CONFIG_KEY = "config"
KEYS_PREFIX = "keys/"
MiB = 1 << 20
MIN_CHUNK, MAX_CHUNK = 64 * 1024, 16 * MiB
_CONFIG_AD = b"HVNCFG" + bytes((FORMAT_VERSION,))
_MANIFEST_CACHE = 256  # decoded manifests kept by manifests(); treat them as read-only


@dataclass(frozen=True, slots=True)
class RepoConfig:
    repo_id: str
    chunk_size: int = MiB
    pack_size: int = 32 * MiB
    compression_level: int = 1
    version: int = FORMAT_VERSION
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


def validate_chunk_size(chunk_size: int) -> None:
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK or chunk_size & (chunk_size - 1):
        raise InvalidArgument("chunk_size", "must be a power of two between 64 KiB and 16 MiB")


def _secret(password: str | bytes) -> bytes:
    return password.encode() if isinstance(password, str) else password


class Repository:
    """An open repository. Create with :meth:`init` or :meth:`open`."""

    def __init__(self, backend: Backend, keys: KeyRing, config: RepoConfig) -> None:
        self.backend = backend
        self.keys = keys
        self.config = config
        self.index = ChunkIndex()
        self.index_problems: list[str] = []  # unreadable index objects seen by reload_index
        self.lock_policy = LockPolicy()
        self._manifest_cache: dict[str, VolumeManifest] = {}
        self._cache_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        backend: Backend,
        *,
        password: str | bytes | None = None,
        master_key: bytes | None = None,
        chunk_size: int = MiB,
        pack_size: int = 32 * MiB,
        compression_level: int = 1,
        scrypt: ScryptParams | None = None,
    ) -> Repository:
        """Create a repository. Give ``password`` (a key envelope is stored) or
        ``master_key`` (from a key file the caller keeps; nothing key-related is stored).
        Without either, a passphrase is required."""
        validate_chunk_size(chunk_size)
        if pack_size < chunk_size:
            raise InvalidArgument("pack_size", "must be at least the chunk size")
        if not 0 <= compression_level <= 19:
            raise InvalidArgument("compression_level", "must be 0 (off) to 19")
        if backend.exists(CONFIG_KEY):
            raise RepositoryExists(f"a repository already exists at {backend.describe()}")
        if password is None and master_key is None:
            raise KeyMissing("a passphrase or a key file is required to create a repository")
        master = master_key or new_master_key()
        keys = KeyRing(master)
        if password is not None:
            envelope = wrap_master_key(master, _secret(password), scrypt or ScryptParams())
            backend.put(KEYS_PREFIX + "default", envelope)
        config = RepoConfig(os.urandom(16).hex(), chunk_size, pack_size, compression_level)
        doc = json.dumps(asdict(config))
        backend.put(CONFIG_KEY, keys.seal_meta(doc.encode(), _CONFIG_AD))
        return cls(backend, keys, config)

    @classmethod
    def open(
        cls,
        backend: Backend,
        *,
        password: str | bytes | None = None,
        master_key: bytes | None = None,
        load_index: bool = True,
    ) -> Repository:
        try:
            sealed_config = backend.get(CONFIG_KEY)
        except ObjectNotFound:
            raise RepositoryNotFound(f"no repository at {backend.describe()}") from None
        if master_key is None:
            master_key = _unlock(backend, password)
        keys = KeyRing(master_key)
        try:
            doc = json.loads(keys.open_meta(sealed_config, _CONFIG_AD, CONFIG_KEY))
        except CorruptObject:
            raise WrongKey("the key does not open this repository") from None
        if doc.get("version") != FORMAT_VERSION:
            raise UnsupportedFormat(f"repository format version {doc.get('version')}")
        repo = cls(backend, keys, RepoConfig(**doc))
        if load_index:
            repo.reload_index()
        return repo

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- locks and index ---------------------------------------------------------------
    def lock(self, kind: LockKind) -> RepoLock:
        """Acquire a repository lock (blocks up to ``lock_policy.wait``)."""
        return RepoLock(self.backend, self.keys, kind, self.lock_policy).acquire()

    def reload_index(self) -> None:
        """Rebuild the chunk index from ``index/`` (reusing packs already known)."""
        old = self.index
        fresh = ChunkIndex()
        wanted = [i.key[len(INDEX_PREFIX) :] for i in self.backend.list(INDEX_PREFIX)]
        missing = [p for p in wanted if p not in old.packs]
        problems: list[str] = []

        def load(pack_id: str) -> tuple[str, bytes | None]:
            try:
                return pack_id, self.backend.get(index_key(pack_id))
            except ObjectNotFound:  # deleted by prune while we listed
                return pack_id, None

        with ThreadPoolExecutor(max_workers=8) as pool:
            loaded = dict(pool.map(load, missing))
        for pack_id in sorted(wanted):
            if pack_id in old.packs:
                fresh.add_pack(pack_id, old.packs[pack_id])
            else:
                blob = loaded.get(pack_id)
                if blob is None:
                    continue
                try:
                    fresh.add_pack(pack_id, open_index(self.keys, pack_id, blob))
                except CorruptObject as exc:
                    # Unusable index: its chunks count as absent (a backup stores them
                    # again, check reports the damage); opening must still work.
                    problems.append(str(exc))
        self.index = fresh
        self.index_problems = problems

    def upload_pack(self, sealed: SealedPack) -> int:
        """Store a pack, then its index object; returns bytes uploaded. Only after both
        are stored may a manifest reference the pack's chunks."""
        try:
            size = len(sealed.data)
            self.backend.put(pack_key(sealed.pack_id), sealed.data)
        finally:
            sealed.release()
        self.backend.put(index_key(sealed.pack_id), sealed.index_blob)
        self.index.add_pack(sealed.pack_id, sealed.entries)
        return size + len(sealed.index_blob)

    def read_chunk(self, chunk_id: bytes, location: Location | None = None) -> bytes:
        """Plaintext of a chunk, authenticated and hash-checked."""
        loc = location or self.index.get(chunk_id)
        if loc is None:
            raise CorruptObject(f"chunk {chunk_id.hex()}", "not in any pack index")
        key = pack_key(loc.pack_id)
        try:
            blob = self.backend.get_range(key, loc.offset, loc.length)
        except ObjectNotFound:
            raise CorruptObject(key, "pack is missing") from None
        if len(blob) != loc.length:
            raise CorruptObject(key, "pack is truncated")
        return decode_chunk(self.keys, chunk_id, blob, key)

    def read_chunk_run(self, run: list[tuple[bytes, Location]]) -> list[bytes]:
        """Plaintexts of chunks stored back to back in one pack, fetched with a single
        ranged read (one request instead of ``len(run)`` on remote stores)."""
        first, last = run[0][1], run[-1][1]
        key = pack_key(first.pack_id)
        span = last.offset + last.length - first.offset
        try:
            blob = self.backend.get_range(key, first.offset, span)
        except ObjectNotFound:
            raise CorruptObject(key, "pack is missing") from None
        if len(blob) != span:
            raise CorruptObject(key, "pack is truncated")
        view = memoryview(blob)
        out = []
        for cid, loc in run:
            rel = loc.offset - first.offset
            out.append(decode_chunk(self.keys, cid, view[rel : rel + loc.length], key))
        return out

    def read_span(
        self, pack_id: str, offset: int, length: int, buf: mmap.mmap | None = None
    ) -> memoryview:
        """``length`` stored bytes of a pack from ``offset`` (one ranged read). With an
        aligned ``buf`` (``length + 8192`` bytes, from ``directio.aligned_buffer``) and a
        backend that can read into it (local), the bytes land in ``buf`` without a copy
        and bypass the page cache; the view is valid until ``buf`` is reused."""
        key = pack_key(pack_id)
        reader = getattr(self.backend, "get_range_into", None) if buf is not None else None
        try:
            if reader is not None:
                view: memoryview = reader(key, offset, length, buf)
            else:
                view = memoryview(self.backend.get_range(key, offset, length))
        except ObjectNotFound:
            raise CorruptObject(key, "pack is missing") from None
        if len(view) != length:
            raise CorruptObject(key, "pack is truncated")
        return view

    # -- manifests ---------------------------------------------------------------------
    def list_manifest_ids(self) -> list[str]:
        return sorted(i.key[len(MANIFEST_PREFIX) :] for i in self.backend.list(MANIFEST_PREFIX))

    def load_manifest(self, manifest_id: str) -> VolumeManifest:
        try:
            blob = self.backend.get(manifest_key(manifest_id))
        except ObjectNotFound:
            raise ManifestNotFound(f"no manifest {manifest_id}") from None
        return open_manifest(self.keys, manifest_id, blob)

    def manifests(self, volume: str | None = None) -> list[VolumeManifest]:
        """All manifests (oldest first), optionally of one volume."""
        ids = self.list_manifest_ids()
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(self._load_or_none, ids))
        out = [m for m in found if m is not None and (volume is None or m.volume == volume)]
        return sorted(out, key=lambda m: (m.created, m.manifest_id))

    def _load_or_none(self, manifest_id: str) -> VolumeManifest | None:
        # Manifests are immutable, so ids just listed may be served from the cache;
        # load_manifest() itself always reads (check and restore see the stored bytes).
        cached = self._manifest_cache.get(manifest_id)
        if cached is not None:
            return cached
        try:
            m = self.load_manifest(manifest_id)
        except ManifestNotFound:
            return None
        with self._cache_lock:
            if len(self._manifest_cache) >= _MANIFEST_CACHE:
                self._manifest_cache.pop(next(iter(self._manifest_cache)))
            self._manifest_cache[manifest_id] = m
        return m

    def latest(self, volume: str) -> VolumeManifest | None:
        found = self.manifests(volume)
        return found[-1] if found else None

    def find_manifest(self, ref: str) -> VolumeManifest:
        """By manifest id, or ``<volume>`` (latest) or ``<volume>@<point_id>``."""
        if ref in self.list_manifest_ids():
            return self.load_manifest(ref)
        volume, _, point = ref.partition("@")
        for m in reversed(self.manifests(volume)):
            if not point or m.point_id == point:
                return m
        raise ManifestNotFound(f"no manifest matches {ref!r}")

    def commit_manifest(self, manifest: VolumeManifest) -> None:
        """Write a manifest: the single atomic step that makes a point visible."""
        self.backend.put(manifest_key(manifest.manifest_id), seal_manifest(self.keys, manifest))

    def delete_manifest(self, manifest_id: str) -> None:
        self.backend.delete(manifest_key(manifest_id))


def _unlock(backend: Backend, password: str | bytes | None) -> bytes:
    envelopes = list(backend.list(KEYS_PREFIX))
    if not envelopes:
        raise KeyMissing("this repository is opened with a key file; none was given")
    if password is None:
        raise KeyMissing("a repository passphrase is required")
    for info in envelopes:
        try:
            return unwrap_master_key(backend.get(info.key), _secret(password))
        except WrongKey:
            continue
    raise WrongKey("wrong repository passphrase")
