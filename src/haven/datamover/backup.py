"""Backup of one volume into a repository (full, or incremental with changed extents).

Contract of :func:`backup_volume`:
- Holds a SHARED repository lock from before it reloads the chunk index until the
  manifest is written, so a concurrent prune cannot delete a chunk it dedups against.
- Reads only what it must: chunks outside the source's allocation map are recorded as
  zero without reading; with ``changed`` (CBT extents since ``parent``) only chunks that
  overlap a changed extent are read and every other chunk id is copied from the parent.
- An all-zero chunk is never stored. A chunk already in the index (or uploaded earlier
  in this run) is not stored again.
- Packs are uploaded (pack, then index) as they fill; the manifest is written last.
  A crash at any point leaves no visible point; packs already indexed are reused by the
  next backup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from haven.datamover.blockio import AllocationMap, BlockSource
from haven.datamover.codec import encode_chunk_writer
from haven.datamover.errors import InvalidArgument, VolumeIOError
from haven.datamover.locks import LockKind
from haven.datamover.manifest import (
    VolumeManifest,
    chunk_count,
    new_manifest_id,
    volume_checksum,
)
from haven.datamover.packs import ChunkIndex, PackBuilder, SealedPack
from haven.datamover.parallel import default_workers, run_chunked
from haven.datamover.progress import ProgressCallback, ProgressMeter
from haven.datamover.repository import Repository
from haven.domain.extents import Extent, merge_extents


@dataclass(frozen=True, slots=True)
class BackupStats:
    size: int
    bytes_read: int
    chunks_total: int
    chunks_read: int
    chunks_zero: int
    chunks_new: int
    chunks_dedup: int
    chunks_from_parent: int
    bytes_new: int  # plaintext bytes of new chunks
    bytes_uploaded: int  # bytes of packs and pack indexes put to the backend
    elapsed: float


@dataclass(frozen=True, slots=True)
class BackupResult:
    manifest: VolumeManifest
    stats: BackupStats


def _chunks_overlapping(extents: Sequence[Extent], chunk_size: int, n: int) -> set[int]:
    out: set[int] = set()
    for ext in merge_extents(extents):
        first = ext.offset // chunk_size
        last = min((ext.end - 1) // chunk_size, n - 1)
        out.update(range(first, last + 1))
    return out


@dataclass(slots=True)
class _Plan:
    chunks: list[bytes | None]
    to_read: list[int]
    from_parent: int


def _plan(
    size: int,
    cs: int,
    source: BlockSource,
    parent: VolumeManifest | None,
    changed: Sequence[Extent] | None,
    index: ChunkIndex,
) -> _Plan:
    n = chunk_count(size, cs)
    chunks: list[bytes | None] = [None] * n
    wanted = set(range(n))
    from_parent = 0
    if changed is not None:
        if parent is None:
            raise InvalidArgument("changed", "changed extents need a parent manifest")
        if parent.chunk_size != cs:
            raise InvalidArgument("parent", "parent was written with another chunk size")
        # Chunks identical in extent in both volumes: whole chunks below the smaller size
        # (a resized volume's partial last chunk is always re-read).
        reusable = min(parent.size, size) // cs
        if parent.size == size:
            reusable = n
        wanted = _chunks_overlapping(changed, cs, n) | set(range(reusable, n))
        for i in range(min(reusable, n)):
            if i in wanted:
                continue
            cid = parent.chunks[i]
            # The parent may have been loaded before our lock and forgotten and pruned
            # since: reuse only ids the (freshly loaded) index still holds, re-read the rest.
            if cid is None or cid in index:
                chunks[i] = cid
                from_parent += 1
            else:
                wanted.add(i)
    if isinstance(source, AllocationMap):
        allocated = _chunks_overlapping(source.allocated(), cs, n)
        wanted &= allocated
    return _Plan(chunks, sorted(wanted), from_parent)


def backup_volume(
    repo: Repository,
    source: BlockSource,
    *,
    volume: str,
    point_id: str | None = None,
    parent: VolumeManifest | str | None = None,
    changed: Sequence[Extent] | None = None,
    labels: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> BackupResult:
    """Back up ``source`` as a new manifest of ``volume``; see the module contract."""
    try:
        return _backup(repo, source, volume, point_id, parent, changed, labels, progress, workers)
    except OSError as exc:
        raise VolumeIOError.wrap(f"backup of {volume}", exc) from exc


def _backup(
    repo: Repository,
    source: BlockSource,
    volume: str,
    point_id: str | None,
    parent: VolumeManifest | str | None,
    changed: Sequence[Extent] | None,
    labels: dict[str, str] | None,
    progress: ProgressCallback | None,
    workers: int | None,
) -> BackupResult:
    start = time.monotonic()
    cs = repo.config.chunk_size
    size = source.size
    workers = workers or default_workers()
    with repo.lock(LockKind.SHARED) as lock:
        repo.reload_index()
        parent_m = repo.load_manifest(parent) if isinstance(parent, str) else parent
        plan = _plan(size, cs, source, parent_m, changed, repo.index)
        run = _BackupRun(repo, source, plan.chunks, cs, size)
        meter = ProgressMeter("backup", sum(min(cs, size - i * cs) for i in plan.to_read), progress)
        run.meter = meter
        try:
            run_chunked(plan.to_read, run.process, workers=workers, buffer_size=cs)
            tail = run.packs.flush()
            if tail is not None:
                run.upload(tail)
        finally:
            run.uploads.shutdown(wait=True)
        run.raise_upload_error()
        now = datetime.now(UTC)
        manifest = VolumeManifest(
            manifest_id=new_manifest_id(now),
            volume=volume,
            point_id=point_id or now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            created=now,
            size=size,
            chunk_size=cs,
            chunks=plan.chunks,
            checksum=volume_checksum(repo.keys, size, cs, plan.chunks),
            parent=parent_m.manifest_id if parent_m else None,
            labels=dict(labels or {}),
        )
        lock.ensure_held()
        repo.commit_manifest(manifest)
        meter.finish()
    stats = BackupStats(
        size=size,
        bytes_read=run.bytes_read,
        chunks_total=len(plan.chunks),
        chunks_read=len(plan.to_read),
        chunks_zero=sum(1 for c in plan.chunks if c is None),
        chunks_new=run.new,
        chunks_dedup=run.dedup,
        chunks_from_parent=plan.from_parent,
        bytes_new=run.bytes_new,
        bytes_uploaded=run.uploaded,
        elapsed=time.monotonic() - start,
    )
    return BackupResult(manifest, stats)


_ZERO_CACHE: dict[int, bytes] = {}


def _zeros(n: int) -> bytes:
    z = _ZERO_CACHE.get(n)
    if z is None:
        z = _ZERO_CACHE[n] = bytes(n)
    return z


class _BackupRun:
    """Per-run state shared by the worker threads."""

    def __init__(
        self, repo: Repository, source: BlockSource, chunks: list[bytes | None], cs: int, size: int
    ) -> None:
        self.repo, self.source, self.chunks, self.cs, self.size = repo, source, chunks, cs, size
        self.packs = PackBuilder(repo.keys, repo.config.pack_size)
        self.level = repo.config.compression_level
        self._lock = threading.Lock()
        self._pending: set[bytes] = set()
        self.meter: ProgressMeter | None = None
        self.bytes_read = self.bytes_new = self.uploaded = self.new = self.dedup = 0
        # Uploads run beside the hashing/compressing workers; the pack builder's buffer
        # pool bounds how many packs can wait for upload.
        self.uploads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="haven-up")
        self._upload_error: BaseException | None = None

    def upload(self, sealed: SealedPack) -> None:
        def job() -> None:
            try:
                n = self.repo.upload_pack(sealed)
            except BaseException as exc:
                self._upload_error = self._upload_error or exc
                raise
            with self._lock:
                self.uploaded += n

        self.uploads.submit(job)

    def raise_upload_error(self) -> None:
        if self._upload_error is not None:
            raise self._upload_error

    def process(self, index: int, buf: bytearray) -> None:
        off = index * self.cs
        length = min(self.cs, self.size - off)
        view = memoryview(buf)[:length]
        got = self.source.readinto(off, view)
        if got < length:  # a source shorter than announced reads as zeros at the end
            view[got:] = _zeros(length - got)
        is_zero = (buf == _zeros(self.cs)) if length == self.cs else bytes(view) == _zeros(length)
        cid = None if is_zero else self.repo.keys.chunk_id(view)
        new = False
        if cid is not None:
            with self._lock:
                new = cid not in self._pending and cid not in self.repo.index
                if new:
                    self._pending.add(cid)
        if new and cid is not None:
            self.raise_upload_error()
            length_blob, write = encode_chunk_writer(self.repo.keys, cid, view, self.level)
            sealed = self.packs.add_written(cid, length_blob, write)
            if sealed is not None:
                self.upload(sealed)
        self.chunks[index] = cid
        with self._lock:
            self.bytes_read += length
            if new:
                self.new += 1
                self.bytes_new += length
            elif cid is not None:
                self.dedup += 1
        if self.meter is not None:
            self.meter.add(length)
