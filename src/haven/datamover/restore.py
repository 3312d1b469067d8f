"""Restore of one manifest to a file or block device.

Contract of :func:`restore_volume`:
- Holds a SHARED lock, so prune cannot remove the packs it reads.
- Fresh target (new or truncated regular file): zero chunks are not written (the file
  stays sparse); other chunks are fetched in parallel, authenticated, hash-checked and
  written at their offsets.
- Existing target (``into_existing=True`` or a block device): each chunk of the target
  is read and hashed with the repository's id key; only chunks that differ are fetched
  and written (zero chunks are punched or zero-filled). This is what keeps warm standby
  replicas and failback cheap.
- The volume checksum is recomputed from the ids of the bytes actually written or kept
  and compared with the manifest; a mismatch raises :class:`ChecksumMismatch`. A chunk
  that fails authentication raises :class:`CorruptObject`: nothing unverified is ever
  written.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from haven.datamover.blockio import BlockTarget, FileTarget
from haven.datamover.codec import decode_chunk_into
from haven.datamover.crypto import OVERHEAD
from haven.datamover.directio import ALIGN, aligned_buffer
from haven.datamover.errors import ChecksumMismatch, CorruptObject, VolumeIOError
from haven.datamover.locks import LockKind
from haven.datamover.manifest import VolumeManifest, volume_checksum
from haven.datamover.packs import Location
from haven.datamover.parallel import default_workers, run_chunked
from haven.datamover.progress import ProgressCallback, ProgressMeter
from haven.datamover.repository import Repository


@dataclass(frozen=True, slots=True)
class RestoreStats:
    size: int
    chunks_total: int
    chunks_written: int
    chunks_unchanged: int
    chunks_zeroed: int
    bytes_fetched: int
    bytes_written: int
    elapsed: float
    verified: bool


def restore_volume(
    repo: Repository,
    manifest: VolumeManifest | str,
    target: BlockTarget | str | os.PathLike[str],
    *,
    into_existing: bool = False,
    verify: bool = True,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> RestoreStats:
    """Restore ``manifest`` (object or id/ref) to ``target`` (a BlockTarget or a path)."""
    try:
        return _restore(repo, manifest, target, into_existing, verify, progress, workers)
    except OSError as exc:
        raise VolumeIOError.wrap(f"restore to {target}", exc) from exc


def _restore(
    repo: Repository,
    manifest: VolumeManifest | str,
    target: BlockTarget | str | os.PathLike[str],
    into_existing: bool,
    verify: bool,
    progress: ProgressCallback | None,
    workers: int | None,
) -> RestoreStats:
    start = time.monotonic()
    with repo.lock(LockKind.SHARED):
        repo.reload_index()
        m = manifest if isinstance(manifest, VolumeManifest) else repo.find_manifest(manifest)
        own = not isinstance(target, BlockTarget)
        tgt: BlockTarget = (
            FileTarget(os.fspath(target), m.size, existing=into_existing)  # type: ignore[arg-type]
            if own
            else target  # type: ignore[assignment]
        )
        try:
            run = _RestoreRun(repo, m, tgt)
            run.meter = ProgressMeter("restore", m.size, progress)
            run_chunked(
                _groups(m, repo, tgt.fresh, max(_GROUP_BYTES, m.chunk_size)),
                run.process_group,
                # fetching is I/O-bound on remote stores: more threads than cores
                workers=workers or 2 * default_workers(),
                buffer_size=m.chunk_size,
            )
            tgt.flush()
        finally:
            if own and isinstance(tgt, FileTarget):
                tgt.close()
        run.meter.finish()
    if verify:
        got = volume_checksum(repo.keys, m.size, m.chunk_size, run.seen)
        if got != m.checksum:
            raise ChecksumMismatch(
                f"restored volume {m.volume} ({m.manifest_id}) does not match its manifest"
            )
    return RestoreStats(
        size=m.size,
        chunks_total=m.chunk_count,
        chunks_written=run.written,
        chunks_unchanged=run.unchanged,
        chunks_zeroed=run.zeroed,
        bytes_fetched=run.fetched,
        bytes_written=run.bytes_written,
        elapsed=time.monotonic() - start,
        verified=verify,
    )


class _RestoreRun:
    def __init__(self, repo: Repository, m: VolumeManifest, target: BlockTarget) -> None:
        self.repo, self.m, self.target = repo, m, target
        self.fresh = target.fresh
        self.seen: list[bytes | None] = list(m.chunks)
        self.meter: ProgressMeter | None = None
        self._lock = threading.Lock()
        self.written = self.unchanged = self.zeroed = self.fetched = self.bytes_written = 0
        self._zero_ids: dict[int, bytes] = {}
        # Aligned (input span, output run, zstd scratch) buffers, one set per running
        # worker, reused: fresh multi-MiB buffers page-fault on every group.
        self._group_max = max(_GROUP_BYTES, m.chunk_size)
        self._bufs: queue.SimpleQueue[tuple[mmap.mmap, mmap.mmap, mmap.mmap]] = queue.SimpleQueue()

    def _get_bufs(self) -> tuple[mmap.mmap, mmap.mmap, mmap.mmap]:
        try:
            return self._bufs.get_nowait()
        except queue.Empty:
            slack = 1 + OVERHEAD + 2 * ALIGN  # a raw blob is a little larger than its chunk
            return (
                aligned_buffer(self._group_max + self.m.chunk_size + slack),
                aligned_buffer(self._group_max),
                aligned_buffer(self.m.chunk_size + slack),
            )

    def _process_fresh_run(self, group: list[int]) -> None:
        """Chunks ``group`` (consecutive in the volume): one ranged read per window of
        their blobs in one pack, decrypt/decompress/verify each into its place in one
        buffer, then one write of the whole run.

        A full backup's workers append chunks to a pack in the order they finish, so
        consecutive chunks sit close together in a pack but not always back to back or
        in order: windows are cut in pack order (see :func:`_windows`) and may include
        a few bytes of other chunks, which is far cheaper than many small reads."""
        items: list[tuple[int, Location]] = []
        for i in group:
            cid = self.m.chunks[i]
            loc = self.repo.index.get(cid) if cid is not None else None
            if loc is None:
                raise AssertionError("runs hold only indexed non-zero chunks")
            items.append((i, loc))
        inbuf, outbuf, scratch = self._get_bufs()
        fetched = 0
        try:
            out = memoryview(outbuf)
            scratch_mv = memoryview(scratch)
            start, _ = self.m.chunk_span(group[0])
            total = 0
            for window in _windows(items, len(inbuf) - 2 * ALIGN):
                first = window[0][1]
                last_end = max(loc.offset + loc.length for _, loc in window)
                span = last_end - first.offset
                blob = self.repo.read_span(first.pack_id, first.offset, span, inbuf)
                fetched += span
                where = f"data/{first.pack_id[:2]}/{first.pack_id}"
                for i, loc in window:
                    off, length = self.m.chunk_span(i)
                    pos = off - start
                    if not 0 <= pos <= len(out) - length:
                        raise AssertionError("runs are consecutive chunks")
                    rel = loc.offset - first.offset
                    cid = self.m.chunks[i]
                    assert cid is not None
                    decode_chunk_into(
                        self.repo.keys,
                        cid,
                        blob[rel : rel + loc.length],
                        out[pos : pos + length],
                        scratch_mv,
                        where,
                    )
                    total += length
                blob.release()
            last_off, last_len = self.m.chunk_span(group[-1])
            pos = last_off + last_len - start
            if total != pos:
                raise AssertionError("runs are consecutive chunks")
            # Everything in the run is authenticated and hash-checked: now write it.
            if isinstance(self.target, FileTarget):
                self.target.write_buffer(start, outbuf, pos)
            else:  # a caller's target may keep what it is given: not our reused buffer
                self.target.write(start, bytes(out[:pos]))
            out.release()
            scratch_mv.release()
        finally:
            self._bufs.put((inbuf, outbuf, scratch))
        self._count(pos, len(group), fetched, 0, 0, pos)

    def _zero_id(self, length: int) -> bytes:
        z = self._zero_ids.get(length)
        if z is None:
            z = self._zero_ids[length] = self.repo.keys.chunk_id(bytes(length))
        return z

    def process_group(self, group: list[int], buf: bytearray) -> None:
        first = self.m.chunks[group[0]]
        if self.fresh and first is not None and first in self.repo.index:
            self._process_fresh_run(group)
            return
        if len(group) == 1:
            self.process(group[0], buf)
            return
        run: list[tuple[bytes, Location]] = []
        for i in group:
            cid = self.m.chunks[i]
            loc = self.repo.index.get(cid) if cid is not None else None
            if cid is None or loc is None:
                raise AssertionError("groups hold only indexed non-zero chunks")
            run.append((cid, loc))
        for i, data, (_cid, loc) in zip(group, self.repo.read_chunk_run(run), run, strict=True):
            off, length = self.m.chunk_span(i)
            if len(data) != length:
                raise CorruptObject(f"chunk {_cid.hex()}", "has the wrong length")
            self.target.write(off, data)
            self._count(length, 1, loc.length, 0, 0, length)

    def process(self, index: int, buf: bytearray) -> None:
        off, length = self.m.chunk_span(index)
        want = self.m.chunks[index]
        written = unchanged = zeroed = fetched = 0
        if not self.fresh:
            view = memoryview(buf)[:length]
            got = self.target.readinto(off, view)
            if got < length:
                view[got:] = bytes(length - got)
            have = self.repo.keys.chunk_id(view)
            if have == (want if want is not None else self._zero_id(length)):
                unchanged = 1
                self._count(length, 0, 0, 1, 0, 0)
                return
        if want is None:
            if not self.fresh:
                self.target.zero(off, length)
                zeroed = 1
        else:
            loc = self.repo.index.get(want)
            if loc is None:
                raise CorruptObject(f"chunk {want.hex()}", "referenced but in no pack")
            data = self.repo.read_chunk(want, loc)
            if len(data) != length:
                raise CorruptObject(f"chunk {want.hex()}", "has the wrong length")
            self.target.write(off, data)
            written, fetched = 1, loc.length
        self._count(length, written, fetched, unchanged, zeroed, length if written else 0)

    def _count(
        self, length: int, written: int, fetched: int, unchanged: int, zeroed: int, nbytes: int
    ) -> None:
        with self._lock:
            self.written += written
            self.fetched += fetched
            self.unchanged += unchanged
            self.zeroed += zeroed
            self.bytes_written += nbytes
        if self.meter is not None:
            self.meter.add(length)


_GROUP_BYTES = 8 << 20
# Bytes of other objects a read window may include between two wanted blobs.
_MAX_GAP = 1 << 20


def _windows(items: list[tuple[int, Location]], capacity: int) -> list[list[tuple[int, Location]]]:
    """Split (volume index, location) pairs into read windows: sorted by pack and offset,
    a window is a run of blobs in one pack whose gaps are at most ``_MAX_GAP`` and whose
    span fits in ``capacity`` bytes; its first entry has the lowest offset."""
    ordered = sorted(items, key=lambda it: (it[1].pack_id, it[1].offset))
    out: list[list[tuple[int, Location]]] = []
    cur: list[tuple[int, Location]] = []
    end = 0
    for it in ordered:
        loc = it[1]
        if (
            cur
            and loc.pack_id == cur[0][1].pack_id
            and loc.offset - end <= _MAX_GAP
            and max(end, loc.offset + loc.length) - cur[0][1].offset <= capacity
        ):
            cur.append(it)
            end = max(end, loc.offset + loc.length)
            continue
        if cur:
            out.append(cur)
        cur, end = [it], loc.offset + loc.length
    if cur:
        out.append(cur)
    return out


def _groups(
    m: VolumeManifest, repo: Repository, fresh: bool, max_bytes: int = _GROUP_BYTES
) -> Iterator[list[int]]:
    """Chunk indices in volume order. For fresh targets, consecutive indexed non-zero
    chunks are grouped into runs of at most ``max_bytes`` of plaintext (and about as
    much stored): a run is written with one write, and each stretch of it stored back
    to back in one pack (the usual layout after a full backup) is fetched with one
    ranged read. Restore-into-existing compares chunk by chunk (groups of one)."""
    group: list[int] = []
    size = 0
    per_run = max(1, max_bytes // m.chunk_size)
    for i, cid in enumerate(m.chunks):
        loc = repo.index.get(cid) if fresh and cid is not None else None
        if loc is None:
            if group:
                yield group
                group = []
            yield [i]
            continue
        if group and len(group) < per_run and size + loc.length <= max_bytes + len(group) * 64:
            group.append(i)
            size += loc.length
        else:
            if group:
                yield group
            group, size = [i], loc.length
    if group:
        yield group
