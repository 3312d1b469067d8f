"""The repository: keys, config, chunk index, packs and manifests on a backend.

Layout on the backend (see docs/repository-format.md)::

    keys/<name>            plaintext scrypt key envelope (absent with a key file)
    keycheck               plaintext keyed hash of a constant: wrong key vs damaged config
    config                 meta-sealed JSON: format version, repo id, chunk/pack size...
    heads/<seq>            meta-sealed record of the live manifests (see heads.py)
    data/<pp>/<pack_id>    packs of encrypted chunk blobs
    index/<pack_id>        meta-sealed entry table of one pack, written after the pack
    manifests/<id>         meta-sealed volume manifests, written last
    locks/<lock_id>        meta-sealed lock records

Thread-safety: after ``open``, reading methods may be called from many threads; the
index is rebuilt only by :meth:`reload_index`, which callers run under a lock.

Robustness contract: one damaged or foreign object affects only the points that need
it. Listing reads the newest head (the record of points) and loads only the manifests
it names; an unreadable manifest is reported in :attr:`Repository.manifest_problems`
and left out, never raised from a listing. Every object read for metadata is bounded in
size before it is parsed.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from haven.datamover.backends.base import Backend, ObjectNotFound
from haven.datamover.codec import decode_chunk
from haven.datamover.crypto import (
    FORMAT_VERSION,
    MAX_ENVELOPE_BYTES,
    KeyRing,
    ScryptParams,
    key_check,
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
    RollbackDetected,
    UnsupportedFormat,
    WrongKey,
)
from haven.datamover.heads import (
    KEEP,
    Head,
    HeadEntry,
    HighWaterMark,
    RegisterView,
    head_key,
    list_head_seqs,
    read_register,
    seal_head,
)
from haven.datamover.locks import LockKind, LockPolicy, RepoLock
from haven.datamover.manifest import (
    MANIFEST_PREFIX,
    MAX_MANIFEST_BYTES,
    VolumeManifest,
    manifest_key,
    open_manifest,
    seal_manifest,
)
from haven.datamover.packs import (
    INDEX_PREFIX,
    MAX_INDEX_BYTES,
    ChunkIndex,
    Location,
    SealedPack,
    index_key,
    open_index,
    pack_key,
)

CONFIG_KEY = "config"
KEYCHECK_KEY = "keycheck"
KEYS_PREFIX = "keys/"
MAX_CONFIG_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 << 20
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


def read_bounded(backend: Backend, key: str, limit: int) -> bytes:
    """The object at ``key``, refused as corrupt if larger than ``limit`` bytes (one
    ranged read: a huge object is never fetched whole)."""
    blob = backend.get_range(key, 0, limit + 1)
    if len(blob) > limit:
        raise CorruptObject(key, f"larger than {limit} bytes")
    return blob


def _config_from(doc: object) -> RepoConfig:
    """A RepoConfig from the decrypted JSON, every field checked (CorruptObject if not)."""
    if not isinstance(doc, dict):
        raise CorruptObject(CONFIG_KEY, "not a JSON object")
    if doc.get("version") != FORMAT_VERSION:
        raise UnsupportedFormat(f"repository format version {doc.get('version')!r}")
    try:
        config = RepoConfig(
            repo_id=doc["repo_id"],
            chunk_size=doc["chunk_size"],
            pack_size=doc["pack_size"],
            compression_level=doc["compression_level"],
            version=doc["version"],
            created=doc["created"],
        )
    except (KeyError, TypeError) as exc:
        raise CorruptObject(CONFIG_KEY, f"missing or extra field ({exc})") from None
    ok = (
        isinstance(config.repo_id, str)
        and len(config.repo_id) == 32
        and all(c in "0123456789abcdef" for c in config.repo_id)
        and type(config.chunk_size) is int
        and type(config.pack_size) is int
        and type(config.compression_level) is int
        and isinstance(config.created, str)
    )
    if not ok:
        raise CorruptObject(CONFIG_KEY, "a field has the wrong type or form")
    try:
        validate_chunk_size(config.chunk_size)
    except InvalidArgument:
        raise CorruptObject(CONFIG_KEY, "chunk size out of range") from None
    if not (
        config.chunk_size <= config.pack_size <= 4 << 30 and 0 <= config.compression_level <= 19
    ):
        raise CorruptObject(CONFIG_KEY, "pack size or compression level out of range")
    return config


class Repository:
    """An open repository. Create with :meth:`init` or :meth:`open`."""

    def __init__(
        self,
        backend: Backend,
        keys: KeyRing,
        config: RepoConfig,
        high_water: HighWaterMark | None = None,
    ) -> None:
        self.backend = backend
        self.keys = keys
        self.config = config
        self.high_water = high_water
        self.index = ChunkIndex()
        self.index_problems: list[str] = []  # unreadable index objects seen by reload_index
        # problems met by the last listing (damaged heads, unreadable or missing manifests)
        self.manifest_problems: list[str] = []
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
        state_dir: Path | None = None,
    ) -> Repository:
        """Create a repository. Give ``password`` (a key envelope is stored) or
        ``master_key`` (from a key file the caller keeps; only a key check value is
        stored). Without either, a passphrase is required. ``state_dir``: where this
        host remembers the newest head it saw of each repository (rollback detection)."""
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
        if password is not None:
            envelope = wrap_master_key(master, _secret(password), scrypt or ScryptParams())
            backend.put(KEYS_PREFIX + "default", envelope)
        backend.put(KEYCHECK_KEY, key_check(master))
        config = RepoConfig(os.urandom(16).hex(), chunk_size, pack_size, compression_level)
        doc = json.dumps(asdict(config))
        backend.put(CONFIG_KEY, KeyRing(master).seal_meta(doc.encode(), _CONFIG_AD))
        keys = KeyRing(master, config.repo_id)
        mark = HighWaterMark(state_dir, config.repo_id) if state_dir is not None else None
        repo = cls(backend, keys, config, mark)
        with repo.lock(LockKind.REGISTER):
            repo._write_head(0, [])
        return repo

    @classmethod
    def open(
        cls,
        backend: Backend,
        *,
        password: str | bytes | None = None,
        master_key: bytes | None = None,
        load_index: bool = True,
        state_dir: Path | None = None,
    ) -> Repository:
        """Open a repository. Errors: :class:`RepositoryNotFound` (no ``config``),
        :class:`WrongKey` (exit 7: the key check or envelope says the key is wrong),
        :class:`CorruptObject` (exit 6: the key is right but ``config`` is damaged),
        :class:`UnsupportedFormat` (a format this code does not read)."""
        try:
            sealed_config = read_bounded(backend, CONFIG_KEY, MAX_CONFIG_BYTES)
        except ObjectNotFound:
            raise RepositoryNotFound(f"no repository at {backend.describe()}") from None
        envelope_opened = master_key is None  # an envelope that opened proves the key
        if master_key is None:
            master_key = _unlock(backend, password)
        unbound = KeyRing(master_key)
        try:
            plain = unbound.open_meta(sealed_config, _CONFIG_AD, CONFIG_KEY)
        except CorruptObject:
            # wrong key, or a damaged config? the key check value (or the envelope) says
            _refuse_v1(unbound, sealed_config)
            if envelope_opened or _key_checks(backend, master_key):
                raise CorruptObject(
                    CONFIG_KEY, "damaged (the key is right: run haven repo check)"
                ) from None
            raise WrongKey(
                "the key does not open this repository (or its config and keycheck "
                "objects are damaged)"
            ) from None
        try:
            doc = json.loads(plain)
        except (ValueError, RecursionError):
            raise CorruptObject(CONFIG_KEY, "not JSON") from None
        config = _config_from(doc)
        mark = HighWaterMark(state_dir, config.repo_id) if state_dir is not None else None
        repo = cls(backend, KeyRing(master_key, config.repo_id), config, mark)
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
                return pack_id, read_bounded(self.backend, index_key(pack_id), MAX_INDEX_BYTES)
            except ObjectNotFound:  # deleted by prune while we listed
                return pack_id, None
            except CorruptObject:  # too large to be an index
                return pack_id, b""

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

    # -- heads and manifests -------------------------------------------------------------
    def register(self) -> RegisterView:
        """The newest head (the record of live points) and any problem with the heads,
        including a rollback this host can see (its high-water mark)."""
        view = read_register(self.backend, self.keys, MAX_HEAD_BYTES)
        if self.high_water is not None:
            behind = self.high_water.check(view)
            if behind:
                view.rollback = behind
                view.problems.append(behind)
            elif view.head is not None and not view.fallback:
                self.high_water.advance(view.head)
        return view

    def present_manifest_ids(self) -> list[str]:
        """Every object under ``manifests/``, recorded in a head or not."""
        return sorted(i.key[len(MANIFEST_PREFIX) :] for i in self.backend.list(MANIFEST_PREFIX))

    def _live_entries(self, volume: str | None) -> list[HeadEntry]:
        return self._live(volume)[0]

    def _live(self, volume: str | None) -> tuple[list[HeadEntry], RegisterView]:
        """Entries of the live points (of one volume). When the newest head is unreadable,
        the newest readable one is used plus every manifest stored after it (listed as
        unverified in :attr:`manifest_problems`)."""
        view = self.register()
        problems = list(view.problems)
        entries = list(view.head.entries) if view.head is not None else []
        if view.fallback:
            since = view.head.created if view.head is not None else None
            known = {e.manifest_id for e in entries}
            extra = [
                mid
                for mid in self.present_manifest_ids()
                if mid not in known and (since is None or _id_time(mid) >= since)
            ]
            for mid in extra:
                m = self._load_or_none(mid, problems)
                if m is not None:
                    entries.append(HeadEntry(mid, m.volume, m.point_id))
                    problems.append(f"manifest {mid} listed without a head record (unverified)")
        self.manifest_problems = problems
        return [e for e in entries if volume is None or e.volume == volume], view

    def load_manifest(self, manifest_id: str) -> VolumeManifest:
        try:
            blob = read_bounded(self.backend, manifest_key(manifest_id), MAX_MANIFEST_BYTES)
        except ObjectNotFound:
            raise ManifestNotFound(f"no manifest {manifest_id}") from None
        return open_manifest(self.keys, manifest_id, blob)

    def manifests(self, volume: str | None = None) -> list[VolumeManifest]:
        """Live manifests (oldest first), optionally of one volume. A recorded manifest
        that is missing or unreadable is left out and named in :attr:`manifest_problems`."""
        entries = self._live_entries(volume)
        problems = self.manifest_problems
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda e: self._load_or_none(e.manifest_id, problems), entries))
        out = [m for m in found if m is not None]
        return sorted(out, key=lambda m: (m.created, m.manifest_id))

    def _load_or_none(self, manifest_id: str, problems: list[str]) -> VolumeManifest | None:
        # Manifests are immutable, so ids just listed may be served from the cache;
        # load_manifest() itself always reads (check and restore see the stored bytes).
        cached = self._manifest_cache.get(manifest_id)
        if cached is not None:
            return cached
        try:
            m = self.load_manifest(manifest_id)
        except ManifestNotFound:
            problems.append(f"manifest {manifest_id} is recorded but missing")
            return None
        except CorruptObject as exc:
            problems.append(str(exc))
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
        """A live manifest by id, or ``<volume>`` (latest) or ``<volume>@<point_id>``.
        A recorded manifest that is missing or damaged raises :class:`CorruptObject`
        (exit 6) naming it — by name too: the newest point of a volume being damaged is
        never answered with an older one. One that exists but no head records raises
        :class:`ManifestNotFound` (it is not a point)."""
        entries = self._live_entries(None)
        by_id = {e.manifest_id: e for e in entries}
        if ref in by_id:
            return self._load_recorded(ref)
        volume, _, point = ref.partition("@")
        matches = [e for e in entries if e.volume == volume and (not point or e.point_id == point)]
        if not matches:
            raise ManifestNotFound(f"no manifest matches {ref!r}")
        # the newest recorded point of the volume (with that point id): never silently
        # an older one when the newest is missing or damaged
        newest = max(matches, key=lambda e: (_id_time(e.manifest_id), e.manifest_id))
        return self._load_recorded(newest.manifest_id)

    def _load_recorded(self, manifest_id: str) -> VolumeManifest:
        try:
            return self.load_manifest(manifest_id)
        except ManifestNotFound:
            raise CorruptObject(
                manifest_key(manifest_id),
                "recorded as a live point but missing (deleted, or the repository was rolled back)",
            ) from None

    def commit_manifest(self, manifest: VolumeManifest) -> None:
        """Make a point visible: store its manifest, then record it in a new head (under
        the REGISTER lock). Until the head is written the manifest is not a point; a crash
        in between leaves an unrecorded manifest that prune deletes."""
        self.backend.put(manifest_key(manifest.manifest_id), seal_manifest(self.keys, manifest))
        entry = HeadEntry(manifest.manifest_id, manifest.volume, manifest.point_id)
        with self.lock(LockKind.REGISTER):
            self.update_heads(add=[entry])

    def delete_manifest(self, manifest_id: str) -> None:
        """Forget one point (see :meth:`forget_manifests`)."""
        self.forget_manifests([manifest_id])

    def forget_manifests(self, manifest_ids: Sequence[str]) -> None:
        """Forget points: one new head without them, then their manifest objects (the data
        goes at the next prune). Ids no head records are ignored. Callers that hold the
        EXCLUSIVE lock (prune) use :meth:`update_heads` directly."""
        with self.lock(LockKind.REGISTER):
            self.update_heads(remove=list(manifest_ids))
        for manifest_id in manifest_ids:
            self.backend.delete(manifest_key(manifest_id))

    def update_heads(
        self, *, add: list[HeadEntry] | None = None, remove: list[str] | None = None
    ) -> Head:
        """Write the next head: the newest one with ``add`` and without ``remove``. The
        caller holds the REGISTER or the EXCLUSIVE lock. Refuses to build on a record that
        is behind what this host saw (:class:`RollbackDetected`). A damaged newest head is
        replaced by what readers see (the fallback listing), which heals it."""
        live, view = self._live(None)
        entries = {e.manifest_id: e for e in live}
        if view.rollback:
            raise RollbackDetected(
                f"refusing to record points: {view.rollback} (run haven repo check; "
                "haven repo repair --accept-rollback records the repository as it is)"
            )
        for e in add or ():
            entries[e.manifest_id] = e
        for mid in remove or ():
            entries.pop(mid, None)
        seq = (view.newest_seq if view.newest_seq is not None else -1) + 1
        return self._write_head(seq, entries.values())

    def _write_head(self, seq: int, entries: Iterable[HeadEntry]) -> Head:
        blob, head = seal_head(self.keys, seq, entries)
        self.backend.put(head_key(seq), blob)
        for old in list_head_seqs(self.backend):
            if old <= seq - KEEP:
                self.backend.delete(head_key(old))
        if self.high_water is not None:
            self.high_water.advance(head)
        return head


def _id_time(manifest_id: str) -> datetime:
    """The creation time encoded at the start of a manifest id (UTC), or the epoch."""
    try:
        return datetime.strptime(manifest_id[:23], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _refuse_v1(unbound: KeyRing, sealed_config: bytes) -> None:
    """Raise UnsupportedFormat if ``config`` is a format-1 config (other AD)."""
    with contextlib.suppress(CorruptObject):
        unbound.open_meta(sealed_config, b"HVNCFG" + bytes((1,)), CONFIG_KEY)
        raise UnsupportedFormat(
            "this repository uses format v1; this Haven reads format v2 (create a new "
            "repository and take a new full point)"
        )


def _key_checks(backend: Backend, master_key: bytes) -> bool:
    """True if the stored key check value matches ``master_key``."""
    try:
        return read_bounded(backend, KEYCHECK_KEY, 64) == key_check(master_key)
    except (ObjectNotFound, CorruptObject):
        return False


def _unlock(backend: Backend, password: str | bytes | None) -> bytes:
    envelopes = list(backend.list(KEYS_PREFIX))
    if not envelopes:
        raise KeyMissing("this repository is opened with a key file; none was given")
    if password is None:
        raise KeyMissing("a repository passphrase is required")
    damaged: list[CorruptObject] = []
    for info in sorted(envelopes, key=lambda i: i.key):
        try:
            blob = read_bounded(backend, info.key, MAX_ENVELOPE_BYTES)
            return unwrap_master_key(blob, _secret(password), info.key)
        except WrongKey:
            continue
        except CorruptObject as exc:  # another envelope may still open
            damaged.append(exc)
    if damaged and len(damaged) == len(envelopes):
        raise damaged[0]
    raise WrongKey("wrong repository passphrase")
