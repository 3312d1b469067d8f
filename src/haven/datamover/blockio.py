"""What backup reads from and restore writes to.

:class:`BlockSource` is the whole contract a site driver needs to implement (for
example over NBD): ``size`` and ``readinto(offset, buf)``. ``readinto`` must fill
``buf`` completely unless the end of the volume is reached, may be called from several
threads at once, and returns the number of bytes read. A source that knows which parts
are allocated may also implement :class:`AllocationMap` (``allocated()``); backup then
does not read the rest (it is recorded as zero).

:class:`BlockTarget` is what restore writes to; :class:`FileTarget` covers regular
files (sparse) and block devices.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from haven.datamover.directio import open_direct, write_aligned
from haven.domain.extents import Extent


@runtime_checkable
class BlockSource(Protocol):
    @property
    def size(self) -> int: ...

    def readinto(self, offset: int, buf: memoryview) -> int: ...


@runtime_checkable
class AllocationMap(Protocol):
    def allocated(self) -> list[Extent]:
        """Extents that may contain non-zero data, sorted; the rest reads as zero."""
        ...


@runtime_checkable
class BlockTarget(Protocol):
    @property
    def size(self) -> int: ...

    @property
    def fresh(self) -> bool:
        """True if the target reads as all zeros before restore writes to it."""
        ...

    def readinto(self, offset: int, buf: memoryview) -> int: ...

    def write(self, offset: int, data: bytes | memoryview) -> None: ...

    def zero(self, offset: int, length: int) -> None:
        """Make the range read as zeros (punch a hole where possible)."""
        ...

    def flush(self) -> None: ...


def _device_size(fd: int) -> int:
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    return os.lseek(fd, 0, os.SEEK_END)


def _pread_full(fd: int, offset: int, buf: memoryview) -> int:
    done = 0
    while done < len(buf):
        n = os.preadv(fd, [buf[done:]], offset + done)
        if n == 0:
            break
        done += n
    return done


class FileSource:
    """A regular file or block device, read with ``preadv`` (releases the GIL)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.fd = os.open(self.path, os.O_RDONLY)
        self._size = _device_size(self.fd)
        self.is_regular = stat.S_ISREG(os.fstat(self.fd).st_mode)
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    @property
    def size(self) -> int:
        return self._size

    def readinto(self, offset: int, buf: memoryview) -> int:
        return _pread_full(self.fd, offset, buf)

    def allocated(self) -> list[Extent]:
        """Data extents via SEEK_DATA/SEEK_HOLE; the whole file if unsupported."""
        whole = [Extent(0, self._size)] if self._size else []
        if not self.is_regular:
            return whole
        out: list[Extent] = []
        pos = 0
        try:
            while pos < self._size:
                try:
                    start = os.lseek(self.fd, pos, os.SEEK_DATA)
                except OSError:  # ENXIO: no data after pos
                    break
                end = min(os.lseek(self.fd, start, os.SEEK_HOLE), self._size)
                if end > start:
                    out.append(Extent(start, end - start))
                pos = end
        except OSError:
            return whole
        return out

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileTarget:
    """Restore target. A regular file is created or truncated to ``size``; with
    ``existing=True`` its content is kept (restore-into-existing-copy). A block device
    must be at least ``size`` bytes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: int,
        *,
        existing: bool = False,
        direct: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        flags = os.O_RDWR | (0 if existing else os.O_CREAT)
        self.fd = os.open(self.path, flags, 0o600)
        st = os.fstat(self.fd)
        self.is_regular = stat.S_ISREG(st.st_mode)
        self._size = size
        self._direct_fd: int | None = None
        self._use_direct = True
        if self.is_regular:
            if not existing:
                os.ftruncate(self.fd, 0)
            os.ftruncate(self.fd, size)
            self._fresh = not existing
            if self._fresh and direct:
                # A restore writes the volume once: bypass the page cache (see directio).
                self._direct_fd = open_direct(self.path, os.O_WRONLY)
        else:
            if _device_size(self.fd) < size:
                os.close(self.fd)
                raise OSError(f"{self.path} is smaller than the volume ({size} bytes)")
            self._fresh = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def fresh(self) -> bool:
        return self._fresh

    def readinto(self, offset: int, buf: memoryview) -> int:
        return _pread_full(self.fd, offset, buf)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def write_buffer(self, offset: int, buf: mmap.mmap, length: int) -> None:
        """Write ``buf[:length]`` (an aligned buffer from
        :func:`haven.datamover.directio.aligned_buffer`) at ``offset``, with direct I/O
        where possible."""
        dfd = self._direct_fd if self._use_direct else None
        if not write_aligned(dfd, self.fd, buf, length, offset):
            self._use_direct = False  # refused: buffered from now on (fd closed at close())

    def _close_direct(self) -> None:
        if self._direct_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._direct_fd)
            self._direct_fd = None

    def zero(self, offset: int, length: int) -> None:
        if self.is_regular:
            try:
                _punch_hole(self.fd, offset, length)
                return
            except OSError:
                pass
        zeros = bytes(min(length, 1 << 20))
        end = offset + length
        while offset < end:
            n = min(len(zeros), end - offset)
            self.write(offset, memoryview(zeros)[:n])
            offset += n

    def flush(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        self._close_direct()
        os.close(self.fd)

    def __enter__(self) -> FileTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _punch_hole(fd: int, offset: int, length: int) -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    falloc_fl_keep_size, falloc_fl_punch_hole = 0x01, 0x02
    res = libc.fallocate(
        ctypes.c_int(fd),
        ctypes.c_int(falloc_fl_keep_size | falloc_fl_punch_hole),
        ctypes.c_int64(offset),
        ctypes.c_int64(length),
    )
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def iter_chunks(size: int, chunk_size: int) -> Iterator[tuple[int, int, int]]:
    """(index, offset, length) of every chunk of a volume."""
    for i, off in enumerate(range(0, size, chunk_size)):
        yield i, off, min(chunk_size, size - off)
