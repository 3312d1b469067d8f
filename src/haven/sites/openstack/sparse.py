"""A local sparse temporary file that stands in for a volume during an image transfer.

Contract of :class:`SparseFile`:
- It is created empty in ``directory`` (the system temp dir by default), truncated to
  ``size`` (so it reads as all zeros and allocates nothing) and unlinked on ``close()``;
  nothing else ever sees its path.
- :meth:`fill_from` writes a byte stream sequentially from offset 0 and never writes an
  all-zero block of ``HOLE_BLOCK`` bytes, so holes in the volume stay holes in the file
  and :meth:`allocated` (SEEK_DATA/SEEK_HOLE) tells the reader what may hold data. Memory
  stays bounded by one ``HOLE_BLOCK`` plus the stream's own chunk.
- ``pread``/``pwrite`` release the GIL and are safe from several threads (positional I/O).
- :meth:`zero` punches a hole (FALLOC_FL_PUNCH_HOLE), else writes zeros.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator

from haven.domain.extents import Extent

HOLE_BLOCK = 64 * 1024  # the granularity at which zero runs become holes
_ZERO_BLOCK = bytes(HOLE_BLOCK)


class SparseFile:
    def __init__(
        self, size: int, directory: str | None = None, prefix: str = "haven-xfer-"
    ) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        fd, path = tempfile.mkstemp(prefix=prefix, dir=directory)
        self.fd = fd
        self.path = path
        os.ftruncate(fd, size)

    # -- sequential fill from a stream (download) -------------------------------------------
    def fill_from(self, chunks: Iterable[bytes]) -> int:
        """Write ``chunks`` from offset 0, leaving all-zero blocks as holes; return the
        number of stream bytes consumed. Bytes beyond ``size`` are an error (the caller
        checks that the stream is exactly the volume)."""
        pending = bytearray()
        offset = 0  # file offset of pending[0]
        total = 0
        for chunk in chunks:
            if not chunk:
                continue
            total += len(chunk)
            if total > self.size:
                raise ValueError(f"stream longer than the volume ({self.size} bytes)")
            pending += chunk
            whole = len(pending) - len(pending) % HOLE_BLOCK
            if whole:
                self._write_blocks(offset, memoryview(pending)[:whole])
                del pending[:whole]
                offset += whole
        if pending:
            self._write_blocks(offset, memoryview(pending))
        return total

    def _write_blocks(self, offset: int, data: memoryview) -> None:
        """Write ``data`` at ``offset`` skipping all-zero HOLE_BLOCKs (runs are coalesced)."""
        run_start = -1
        pos = 0
        n = len(data)
        while pos < n:
            end = min(pos + HOLE_BLOCK, n)
            block = data[pos:end]
            is_zero = block == _ZERO_BLOCK[: end - pos]
            if is_zero and run_start >= 0:
                self.pwrite(offset + run_start, data[run_start:pos])
                run_start = -1
            elif not is_zero and run_start < 0:
                run_start = pos
            pos = end
        if run_start >= 0:
            self.pwrite(offset + run_start, data[run_start:n])

    # -- random access ----------------------------------------------------------------------
    def pread(self, offset: int, buf: bytearray | memoryview) -> int:
        """Fill ``buf`` from ``offset``; short only at the end of the file."""
        view = memoryview(buf)
        done = 0
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], offset + done)
            if got == 0:
                break
            done += got
        return done

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if offset < 0 or offset + len(view) > self.size:
            raise ValueError(
                f"write of {len(view)} bytes at {offset} is outside the volume ({self.size} bytes)"
            )
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def zero(self, offset: int, length: int) -> None:
        if offset < 0 or offset + length > self.size:
            raise ValueError(f"zero of {length} bytes at {offset} is outside the volume")
        try:
            _punch_hole(self.fd, offset, length)
            return
        except OSError:
            pass
        end = offset + length
        while offset < end:
            n = min(HOLE_BLOCK, end - offset)
            self.pwrite(offset, _ZERO_BLOCK[:n])
            offset += n

    def allocated(self) -> list[Extent]:
        """Extents that may hold data (SEEK_DATA/SEEK_HOLE); the whole file if unsupported."""
        out: list[Extent] = []
        pos = 0
        try:
            while pos < self.size:
                try:
                    start = os.lseek(self.fd, pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # no data after pos
                        break
                    raise
                end = min(os.lseek(self.fd, start, os.SEEK_HOLE), self.size)
                if end > start:
                    out.append(Extent(start, end - start))
                pos = end
        except OSError:
            return [Extent(0, self.size)] if self.size else []
        return out

    def iter_blocks(self, block: int = 1024 * 1024) -> Iterator[bytes]:
        """The whole content in order, ``block`` bytes at a time (holes read as zeros)."""
        buf = bytearray(block)
        offset = 0
        while offset < self.size:
            n = self.pread(offset, memoryview(buf)[: min(block, self.size - offset)])
            if n == 0:
                raise OSError(errno.EIO, "temporary file shorter than the volume")
            yield bytes(buf[:n])
            offset += n

    def flush(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        """Close and remove the file (idempotent)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> SparseFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _punch_hole(fd: int, offset: int, length: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    keep_size, punch_hole = 0x01, 0x02
    res = libc.fallocate(
        ctypes.c_int(fd),
        ctypes.c_int(keep_size | punch_hole),
        ctypes.c_int64(offset),
        ctypes.c_int64(length),
    )
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
