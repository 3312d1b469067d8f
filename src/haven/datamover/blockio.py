"""What backup reads from and restore writes to.

:class:`BlockSource` is the whole contract a site driver needs to implement (for
example over NBD): ``size`` and ``readinto(offset, buf)``. ``readinto`` must fill
``buf`` completely unless the end of the volume is reached, may be called from several
threads at once, and returns the number of bytes read. A source that knows which parts
are allocated may also implement :class:`AllocationMap` (``allocated()``); backup then
does not read the rest (it is recorded as zero).

:class:`BlockTarget` is what restore writes to. Restore reads back what it wrote
through ``readinto`` to verify it, so ``readinto`` must return what the volume holds
now (after ``write`` and ``zero`` returned), from any thread. :class:`FileTarget` covers
regular files (sparse) and block devices; :class:`StagedFileTarget` is a FileTarget on a
private temporary file that replaces its destination only when :meth:`commit` is called.
A target may also implement :class:`DataExtents` (FileTarget does: ``SEEK_DATA``).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import secrets
import stat
from typing import Protocol, runtime_checkable

from haven.datamover.directio import open_direct, pread_aligned, write_aligned
from haven.datamover.errors import InvalidArgument
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


@runtime_checkable
class DataExtents(Protocol):
    """Optional for a :class:`BlockTarget`: where it may hold data, found without reading
    it. Restore uses it to check that the zero chunks of a ``fresh`` target, which it does
    not write, read as zeros: only the parts reported here are read back. A fresh target
    without it is taken at its word for those chunks."""

    def data_extents(self, offset: int, length: int) -> list[Extent]:
        """Parts of ``[offset, offset + length)`` that may hold non-zero data, sorted;
        the rest reads as zeros."""
        ...


def _device_size(fd: int) -> int:
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    return os.lseek(fd, 0, os.SEEK_END)


def _data_extents(fd: int, start: int, end: int) -> list[Extent]:
    """Extents of ``[start, end)`` of a regular file that may hold data (SEEK_DATA and
    SEEK_HOLE); the whole range if the file system cannot tell. The rest reads as zero."""
    whole = [Extent(start, end - start)] if end > start else []
    out: list[Extent] = []
    pos = start
    try:
        while pos < end:
            try:
                first = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            if first >= end:
                break
            last = min(os.lseek(fd, first, os.SEEK_HOLE), end)
            if last > first:
                out.append(Extent(first, last - first))
            pos = max(last, first + 1)
    except OSError:  # SEEK_DATA unsupported: everything may be data
        return whole
    return out


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
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        mode = os.fstat(self.fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            os.close(self.fd)
            raise InvalidArgument("SOURCE", f"{self.path} is not a regular file or block device")
        os.set_blocking(self.fd, True)
        self._size = _device_size(self.fd)
        self.is_regular = stat.S_ISREG(mode)
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    @property
    def size(self) -> int:
        return self._size

    def readinto(self, offset: int, buf: memoryview) -> int:
        return _pread_full(self.fd, offset, buf)

    def allocated(self) -> list[Extent]:
        """Data extents via SEEK_DATA/SEEK_HOLE; the whole file if unsupported."""
        if not self.is_regular:
            return [Extent(0, self._size)] if self._size else []
        return _data_extents(self.fd, 0, self._size)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileTarget:
    """Restore target. A regular file is created or truncated to ``size``; with
    ``existing=True`` its content is kept (restore-into-existing-copy). A block device
    must be at least ``size`` bytes. ``fd``: a descriptor of ``path`` already opened
    read-write (the target owns it from then on, and closes it if construction fails).

    :func:`haven.datamover.restore_volume` given a path never truncates it: it restores
    a fresh file through :class:`StagedFileTarget`. A caller that builds a FileTarget on
    an existing file itself asks for it to be truncated."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: int,
        *,
        existing: bool = False,
        direct: bool = True,
        fd: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        if fd is None:
            fd = os.open(self.path, os.O_RDWR | (0 if existing else os.O_CREAT), 0o600)
        self.fd = fd
        self._size = size
        self._direct_fd: int | None = None
        self._use_direct = True
        try:
            self.is_regular = stat.S_ISREG(os.fstat(fd).st_mode)
            if self.is_regular:
                if not existing:
                    os.ftruncate(fd, 0)
                os.ftruncate(fd, size)
                self._fresh = not existing
                if self._fresh and direct:
                    # A restore writes the volume once and reads it back once to verify
                    # it: bypass the page cache (see directio).
                    self._direct_fd = open_direct(self.path, os.O_RDWR)
            else:
                if _device_size(fd) < size:
                    raise OSError(f"{self.path} is smaller than the volume ({size} bytes)")
                self._fresh = False
        except BaseException:
            self.close()
            raise

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

    def read_buffer(self, offset: int, buf: mmap.mmap, length: int) -> memoryview:
        """Read ``length`` bytes at ``offset`` into ``buf`` (an aligned buffer of at least
        ``length + 2 * ALIGN`` bytes), with direct I/O where :meth:`write_buffer` used
        it, and return a view of them (shorter only at the end of the file)."""
        dfd = self._direct_fd if self._use_direct else None
        return pread_aligned(dfd, self.fd, buf, offset, length)

    def data_extents(self, offset: int, length: int) -> list[Extent]:
        """Parts of ``[offset, offset + length)`` that may hold data; the rest is a hole
        of a regular file (reads as zeros). A block device: the whole range."""
        if not self.is_regular:
            return [Extent(offset, length)] if length else []
        return _data_extents(self.fd, offset, offset + length)

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
        """Close the descriptors (idempotent)."""
        self._close_direct()
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> FileTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ".<name>" + this + 16 hex digits: hidden, and no name a user would pick.
STAGING_MARK = ".haven-restore-"
_NAME_MAX = 255


def staging_name(name: str) -> str:
    """The name of a temporary file for restoring to ``name`` in the same directory:
    ``.<name>.haven-restore-<16 random hex>``, ``name`` shortened if needed to fit
    the file system's 255-byte limit."""
    room = _NAME_MAX - 1 - len(STAGING_MARK) - 16
    short = os.fsdecode(os.fsencode(name)[:room])
    return f".{short}{STAGING_MARK}{secrets.token_hex(8)}"


class StagedFileTarget(FileTarget):
    """A fresh :class:`FileTarget` on a temporary file next to ``dest`` (same directory,
    so the final rename is atomic), created exclusively (``O_EXCL``) with mode 0600 and
    named by :func:`staging_name`.

    :meth:`commit` fsyncs the data, gives the file the destination's permission bits
    (0600 if there is no destination) and, where it may, its owner, renames it over
    ``dest`` and fsyncs the directory. :meth:`close` without a successful commit removes
    the temporary file: until ``commit`` the destination is untouched (or still absent).
    ``dest`` is resolved first, so a symlink keeps pointing at the file it named."""

    def __init__(self, dest: str | os.PathLike[str], size: int, *, direct: bool = True) -> None:
        self.dest = os.path.realpath(os.fspath(dest))
        self.directory = os.path.dirname(self.dest)
        self._committed = False
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        for attempt in range(8):
            tmp = os.path.join(self.directory, staging_name(os.path.basename(self.dest)))
            try:
                fd = os.open(tmp, flags, 0o600)
                break
            except FileExistsError:
                if attempt == 7:
                    raise
        try:
            super().__init__(tmp, size, direct=direct, fd=fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def commit(self) -> None:
        try:
            st: os.stat_result | None = os.stat(self.dest)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            mine = os.fstat(self.fd)
            if (st.st_uid, st.st_gid) != (mine.st_uid, mine.st_gid):
                with contextlib.suppress(PermissionError):  # only root may give files away
                    os.fchown(self.fd, st.st_uid, st.st_gid)
            os.fchmod(self.fd, stat.S_IMODE(st.st_mode) & 0o777)
        os.fsync(self.fd)
        self._close_direct()
        os.replace(self.path, self.dest)
        self._committed = True
        dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if not self._committed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)

    def __enter__(self) -> StagedFileTarget:
        return self


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
