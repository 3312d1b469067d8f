"""Restore of one manifest to a file or block device.

Contract of :func:`restore_volume`:

- Holds a SHARED lock, so prune cannot remove the packs it reads. Every chunk is
  authenticated and hash-checked before it is written (:class:`CorruptObject`
  otherwise): nothing unverified is ever written.
- A path that is a regular file or does not exist (without ``into_existing``) is never
  written in place. The volume is restored into a temporary file in the same directory
  (:class:`~haven.datamover.blockio.StagedFileTarget`: ``.<name>.haven-restore-<random>``,
  created exclusively, mode 0600): zero chunks are not written (the file stays sparse),
  other chunks are fetched in parallel and written in runs. Only after the verification
  below has passed is the file fsynced, given the destination's permission bits, renamed
  over the destination (atomic) and the directory fsynced. On any failure (corrupt chunk,
  verification mismatch, I/O error, KeyboardInterrupt) the temporary file is removed and
  the destination is byte for byte untouched, or still absent. The price: the file system
  must hold the new copy beside the old one until the rename, and other hard links to
  the old file keep the old content (``into_existing`` writes in place instead).
- In place: a regular file with ``into_existing=True``, a block device, or a caller's
  :class:`BlockTarget` that is not ``fresh``. Each chunk of the target is read and hashed
  with the repository's id key; only chunks that differ are fetched and written (zero
  chunks are punched or zero-filled). This is what keeps warm standby replicas and
  failback cheap. In-place restore is not atomic: a failure leaves some chunks new and
  the rest as they were (every chunk written was verified).
- A caller's :class:`BlockTarget` that is ``fresh`` (reads as zeros, e.g. a volume just
  created by a site driver) is written in place like the temporary file: runs, zero
  chunks skipped.
- Verification (``verify=True``, the default) reads back from the target what restore
  wrote and recomputes ids from the bytes read: a run of a fresh target is read back
  with one read after it is written; a chunk written or zeroed in place is read back
  after it is written; an unchanged chunk's id comes from the read that compared it.
  Zero chunks of a fresh target, which restore does not write, are read where the
  target's :class:`~haven.datamover.blockio.DataExtents` says they may hold data (files:
  ``SEEK_DATA``/``SEEK_HOLE``; a hole reads as zeros without being read); a caller's
  fresh target without DataExtents is taken at its word for them. A chunk
  whose id is not the wanted one raises :class:`ChecksumMismatch` naming the volume and
  the offset. Then the volume checksum is recomputed from those ids (of bytes read back,
  never the manifest's list) and compared with the manifest's. ``RestoreStats.verified``
  is True only when all of this ran; ``verify=False`` skips the read-back and the volume
  checksum (chunks are still authenticated before they are written).
- The read-back verifies what the target returns: a target with a cache (the page
  cache for in-place files, a qemu-nbd writeback cache) may answer from it.
"""

from __future__ import annotations

import mmap
import os
import queue
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from haven.datamover.blockio import BlockTarget, DataExtents, FileTarget, StagedFileTarget
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


def _in_place(path: str) -> bool:
    """True if ``path`` exists and is not a regular file (a block device: it cannot be
    replaced by a temporary file; a directory fails when it is opened)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


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
        if isinstance(target, BlockTarget):
            run = _RestoreRun(repo, m, target, verify)
            run.execute(progress, workers)
        else:
            path = os.fspath(target)
            if into_existing or _in_place(path):
                with FileTarget(path, m.size, existing=True) as tgt:
                    run = _RestoreRun(repo, m, tgt, verify)
                    run.execute(progress, workers)
            else:
                try:
                    staged = StagedFileTarget(path, m.size)
                except OSError as exc:
                    where = os.path.dirname(os.path.realpath(path))
                    raise VolumeIOError.wrap(
                        f"restore to {path}: cannot create a temporary file in {where} "
                        "(--into-existing writes in place)",
                        exc,
                    ) from exc
                with staged:
                    run = _RestoreRun(repo, m, staged, verify)
                    run.execute(progress, workers)
                    staged.commit()  # only now is the destination replaced
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


# seen[i] until chunk i has been read back from the target and its id recomputed
_UNVERIFIED = b""


class _RestoreRun:
    def __init__(
        self, repo: Repository, m: VolumeManifest, target: BlockTarget, verify: bool
    ) -> None:
        self.repo, self.m, self.target, self.verify = repo, m, target, verify
        self.fresh = target.fresh
        self._data = target if isinstance(target, DataExtents) else None
        # Ids of the bytes read back from the target; None: a zero chunk of a fresh
        # target that holds no data there (see _check_zero_run).
        self.seen: list[bytes | None] = [_UNVERIFIED] * m.chunk_count
        self.meter: ProgressMeter | None = None
        self._lock = threading.Lock()
        self.written = self.unchanged = self.zeroed = self.fetched = self.bytes_written = 0
        self._zero_ids: dict[int, bytes] = {}
        # Aligned (input span / read-back, output run, zstd scratch) buffers, one set per
        # running worker, reused: fresh multi-MiB buffers page-fault on every group.
        self._group_max = max(_GROUP_BYTES, m.chunk_size)
        self._bufs: queue.SimpleQueue[tuple[mmap.mmap, mmap.mmap, mmap.mmap]] = queue.SimpleQueue()

    def execute(self, progress: ProgressCallback | None, workers: int | None) -> None:
        """Write (and read back) every chunk, flush, then check the volume checksum."""
        m = self.m
        self.meter = ProgressMeter("restore", m.size, progress)
        run_chunked(
            _groups(m, self.repo, self.fresh, self._group_max),
            self.process_group,
            # fetching is I/O-bound on remote stores: more threads than cores
            workers=workers or 2 * default_workers(),
            buffer_size=m.chunk_size,
        )
        self.target.flush()
        self.meter.finish()
        if not self.verify:
            return
        if _UNVERIFIED in self.seen:
            raise AssertionError("every chunk is read back before the volume checksum")
        got = volume_checksum(self.repo.keys, m.size, m.chunk_size, self.seen)
        if got != m.checksum:
            raise ChecksumMismatch(
                f"restored volume {m.volume} ({m.manifest_id}) does not match its manifest"
            )

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

    def _mismatch(self, index: int, what: str) -> ChecksumMismatch:
        off, _ = self.m.chunk_span(index)
        return ChecksumMismatch(
            f"restore of volume {self.m.volume} ({self.m.manifest_id}): the target {what} "
            f"at offset {off} (chunk {index}); the restored volume is not what was backed up"
        )

    def _check(self, index: int, got: memoryview, want: bytes) -> None:
        """``got``: the bytes of chunk ``index`` read back from the target."""
        _, length = self.m.chunk_span(index)
        if len(got) != length:
            raise self._mismatch(index, f"returned {len(got)} of {length} bytes")
        have = self.repo.keys.chunk_id(got)
        if have != want:
            raise self._mismatch(index, "returned other bytes than were written")
        self.seen[index] = have

    def _read_back(self, start: int, length: int, buf: mmap.mmap) -> memoryview:
        """``length`` bytes of the target at ``start``, read into ``buf`` (an aligned
        buffer of at least ``length + 2 * ALIGN`` bytes)."""
        if isinstance(self.target, FileTarget):
            return self.target.read_buffer(start, buf, length)
        view = memoryview(buf)[:length]
        n = self.target.readinto(start, view)
        return view[:n]

    def _check_run(self, group: list[int], wanted: list[bytes], buf: mmap.mmap) -> None:
        """Read back consecutive chunks ``group`` with one read and check their ids."""
        start, _ = self.m.chunk_span(group[0])
        last_off, last_len = self.m.chunk_span(group[-1])
        got = self._read_back(start, last_off + last_len - start, buf)
        try:
            for i, want in zip(group, wanted, strict=True):
                off, length = self.m.chunk_span(i)
                self._check(i, got[off - start : off - start + length], want)
        finally:
            got.release()

    def _process_fresh_run(self, group: list[int]) -> None:
        """Chunks ``group`` (consecutive in the volume): one ranged read per window of
        their blobs in one pack, decrypt/decompress/verify each into its place in one
        buffer, then one write of the whole run, then one read of it back.

        A full backup's workers append chunks to a pack in the order they finish, so
        consecutive chunks sit close together in a pack but not always back to back or
        in order: windows are cut in pack order (see :func:`_windows`) and may include
        a few bytes of other chunks, which is far cheaper than many small reads."""
        items: list[tuple[int, Location]] = []
        wanted: list[bytes] = []
        for i in group:
            cid = self.m.chunks[i]
            loc = self.repo.index.get(cid) if cid is not None else None
            if cid is None or loc is None:
                raise AssertionError("runs hold only indexed non-zero chunks")
            items.append((i, loc))
            wanted.append(cid)
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
            if self.verify:  # the blobs in inbuf are done with: read the run back into it
                self._check_run(group, wanted, inbuf)
        finally:
            self._bufs.put((inbuf, outbuf, scratch))
        self._count(pos, len(group), fetched, 0, 0, pos)

    def _check_zero_run(self, group: list[int]) -> None:
        """Zero chunks ``group`` (consecutive) of a fresh target, which restore does not
        write: read back and hash the chunks that the target's :class:`DataExtents` says
        may hold data; the others are holes (a target without DataExtents: taken on its
        ``fresh`` word, as reading what was never written could cost a full read of a
        remote volume or, for some site writers, a download of its old content)."""
        start, _ = self.m.chunk_span(group[0])
        last_off, last_len = self.m.chunk_span(group[-1])
        end = last_off + last_len
        if self.verify:
            data = self._data.data_extents(start, end - start) if self._data else []
            suspects: list[int] = []
            for i in group:
                off, length = self.m.chunk_span(i)
                if any(e.offset < off + length and off < e.offset + e.length for e in data):
                    suspects.append(i)
                else:
                    self.seen[i] = None  # holds no data: reads as zeros
            if suspects:
                inbuf, outbuf, scratch = self._get_bufs()
                try:
                    for stretch in _consecutive(suspects):
                        zeros = [self._zero_id(self.m.chunk_span(i)[1]) for i in stretch]
                        self._check_run(stretch, zeros, inbuf)
                finally:
                    self._bufs.put((inbuf, outbuf, scratch))
        self._count(end - start, 0, 0, 0, 0, 0)

    def _zero_id(self, length: int) -> bytes:
        z = self._zero_ids.get(length)
        if z is None:
            z = self._zero_ids[length] = self.repo.keys.chunk_id(bytes(length))
        return z

    def process_group(self, group: list[int], buf: bytearray) -> None:
        if not self.fresh:
            self._update(group[0], buf)  # in place: groups of one
            return
        first = self.m.chunks[group[0]]
        if first is None:
            self._check_zero_run(group)
        elif first in self.repo.index:
            self._process_fresh_run(group)
        else:
            raise CorruptObject(f"chunk {first.hex()}", "referenced but in no pack")

    def _update(self, index: int, buf: bytearray) -> None:
        """In place: compare chunk ``index`` of the target with the wanted one; fetch and
        write it (or zero it) if it differs, and read it back."""
        off, length = self.m.chunk_span(index)
        want = self.m.chunks[index]
        want_id = want if want is not None else self._zero_id(length)
        written = zeroed = fetched = 0
        view = memoryview(buf)[:length]
        got = self.target.readinto(off, view)
        if got < length:
            view[got:] = bytes(length - got)
        have = self.repo.keys.chunk_id(view)
        if have == want_id:
            self.seen[index] = have
            self._count(length, 0, 0, 1, 0, 0)
            return
        if want is None:
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
        if self.verify:
            n = self.target.readinto(off, view)
            self._check(index, view[:n], want_id)
        self._count(length, written, fetched, 0, zeroed, length if written else 0)

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


def _consecutive(indices: list[int]) -> Iterator[list[int]]:
    """Sorted ``indices`` split into stretches of consecutive numbers."""
    cur: list[int] = []
    for i in indices:
        if cur and i != cur[-1] + 1:
            yield cur
            cur = []
        cur.append(i)
    if cur:
        yield cur


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
    much stored): a run is written with one write and read back with one read, and each
    stretch of it stored back to back in one pack (the usual layout after a full backup)
    is fetched with one ranged read. Consecutive zero chunks are grouped the same way (at
    most ``max_bytes``: they are checked together); a chunk in no pack is a group of
    one. Restore in place compares chunk by chunk (groups of one)."""
    if not fresh:
        for i in range(m.chunk_count):
            yield [i]
        return
    group: list[int] = []
    zero_group = False
    size = 0
    per_run = max(1, max_bytes // m.chunk_size)
    for i, cid in enumerate(m.chunks):
        if cid is None:
            is_zero, cost = True, 0
        else:
            loc = repo.index.get(cid)
            if loc is None:
                if group:
                    yield group
                    group = []
                yield [i]
                continue
            is_zero, cost = False, loc.length
        if (
            group
            and zero_group == is_zero
            and len(group) < per_run
            and size + cost <= max_bytes + len(group) * 64
        ):
            group.append(i)
            size += cost
        else:
            if group:
                yield group
            group, zero_group, size = [i], is_zero, cost
    if group:
        yield group
