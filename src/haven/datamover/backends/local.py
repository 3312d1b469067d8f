"""Local directory backend.

Durability contract: ``put`` writes a temporary file in the target directory, fsyncs
it, renames it over the key's path (atomic on POSIX) and fsyncs the directory, so after
``put`` returns the object survives a crash and a reader never sees a prefix. (Lock
records under ``locks/`` skip the fsyncs: a lock is meaningless once its writer died.)
Objects of 1 MiB and more (packs) are written, and large ranges read, with ``O_DIRECT``
where the filesystem supports it (see :mod:`haven.datamover.directio`). Temporary
files are named ``.tmp-*`` and are ignored by ``list``; ``cleanup_temp`` removes those
left behind by a crashed writer.

Privacy contract: whatever the umask, every directory the backend creates (the root and
each missing parent of it included) is 0700 and every object 0600; directories that
already existed are left as they are.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from haven.datamover.backends.base import BackendError, ObjectInfo, ObjectNotFound
from haven.datamover.backends.keys import check_key
from haven.datamover.directio import (
    ALIGN,
    BufferPool,
    is_aligned,
    open_direct,
    pread_aligned,
    write_aligned,
)
from haven.datamover.errors import InvalidArgument

_TMP = ".tmp-"
# Objects at least this large (packs) are written and range-read with O_DIRECT: they are
# written once and read rarely, so caching them only costs fresh pages and writeback.
DIRECT_MIN = 1 << 20
# Ranges of packs at least this large are read with O_DIRECT (restore's windows): a
# buffered read would fill fresh page-cache pages and then copy them once more.
DIRECT_READ_MIN = 64 << 10
# Lock records are not fsynced: they only matter while their writer lives (after a crash
# a lost lock is as good as a stale one), and other processes see the write at once.
# Everything else (packs, indexes, manifests, config) is durable when put returns.
_NO_FSYNC_PREFIXES = ("locks/",)
_POOLS: dict[int, BufferPool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(size: int) -> BufferPool:
    """Shared pools of aligned bounce buffers, by size class (multiples of 4 MiB)."""
    cls = ((size + (4 << 20) - 1) >> 22) << 22
    with _POOLS_LOCK:
        pool = _POOLS.get(cls)
        if pool is None:
            pool = _POOLS[cls] = BufferPool(cls)
        return pool


class LocalBackend:
    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, direct: bool = True
    ) -> None:
        self.root = Path(root)
        try:
            if self.root.exists() and not self.root.is_dir():
                raise InvalidArgument("repository", f"{self.root} is not a directory")
            # a root still to be made must lie under a directory, not under a file
            base = next((a for a in self.root.absolute().parents if a.exists()), None)
            if not self.root.exists() and base is not None and not base.is_dir():
                raise InvalidArgument("repository", f"{self.root}: {base} is not a directory")
        except OSError as exc:  # a name too long for the filesystem, a path through a file
            raise InvalidArgument(
                "repository", f"{str(self.root)[:80]!r}... cannot be a directory: {exc.strerror}"
            ) from None
        self.fsync = fsync
        self.direct = direct  # O_DIRECT for large objects where the filesystem allows it
        self._made: set[Path] = set()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key

    def _ensure_dir(self, d: Path) -> None:
        if d in self._made:
            return
        created = _make_private_dirs(d)
        if created and self.fsync:
            _fsync_dir(d.parent)
        with self._lock:
            self._made.add(d)

    def put(self, key: str, data: bytes | memoryview) -> None:
        path = self._path(key)
        try:
            self._ensure_dir(path.parent)
            tmp = path.parent / f"{_TMP}{os.getpid()}-{threading.get_ident()}-{path.name}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if not (
                    len(data) >= DIRECT_MIN and self.direct and self._put_direct(tmp, fd, data)
                ):
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                durable = self.fsync and not key.startswith(_NO_FSYNC_PREFIXES)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if durable:
                _fsync_dir(path.parent)
        except OSError as exc:
            raise BackendError(f"cannot write {key}: {exc.strerror}") from None

    def _put_direct(self, tmp: Path, fd: int, data: bytes | memoryview) -> bool:
        """Write ``data`` to the new file ``tmp`` (open as ``fd``) with O_DIRECT through
        an aligned bounce buffer. False if the filesystem refuses direct I/O."""
        dfd = open_direct(tmp, os.O_WRONLY)
        if dfd is None:
            self.direct = False
            return False
        try:
            n = len(data)
            if is_aligned(data):  # a pack builder's buffer: no bounce copy
                assert isinstance(data, memoryview)
                ok = write_aligned(dfd, fd, data, n, 0)
            else:
                pool = _pool(n)
                buf = pool.get()
                try:
                    buf[:n] = data
                    ok = write_aligned(dfd, fd, buf, n, 0)
                finally:
                    pool.put(buf)
        finally:
            os.close(dfd)
        if not ok:
            self.direct = False
        return True

    def get_range_into(self, key: str, offset: int, length: int, buf: object) -> memoryview:
        """Like :meth:`get_range`, but reads into ``buf`` (an aligned buffer of at least
        ``length + 2 * 4096`` bytes from :func:`haven.datamover.directio.aligned_buffer`)
        and returns a view of the bytes read; large ranges bypass the page cache."""
        import mmap

        assert isinstance(buf, mmap.mmap) and len(buf) >= length + 2 * ALIGN
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        dfd = None
        try:
            if self.direct and length >= DIRECT_READ_MIN:
                dfd = open_direct(self._path(key), os.O_RDONLY)
            return pread_aligned(dfd, fd, buf, offset, length)
        finally:
            os.close(fd)
            if dfd is not None:
                os.close(dfd)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise BackendError(f"cannot read {key}: {exc.strerror}") from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def stat(self, key: str) -> ObjectInfo:
        try:
            return ObjectInfo(key, self._path(key).stat().st_size)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the directory that can hold the prefix.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(_TMP):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        yield ObjectInfo(key, full.stat().st_size)
                    except FileNotFoundError:
                        continue

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BackendError(f"cannot delete {key}: {exc.strerror}") from None

    def cleanup_temp(self, older_than: float = 3600.0) -> int:
        """Remove temporary files of crashed writers; returns how many. Only files not
        modified for ``older_than`` seconds: a live writer's file must never vanish
        (lock objects are written even while prune holds the exclusive lock)."""
        removed = 0
        cutoff = time.time() - older_than
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(_TMP):
                    path = os.path.join(dirpath, name)
                    try:
                        if os.stat(path).st_mtime < cutoff:
                            os.unlink(path)
                            removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    def describe(self) -> str:
        return str(self.root)

    def close(self) -> None:
        pass


def _make_private_dirs(d: Path) -> bool:
    """Create ``d`` and its missing parents, each with mode 0700 exactly (the umask may
    not widen or narrow it); True if ``d`` itself was created."""
    missing: list[Path] = []
    probe = d
    while not probe.is_dir() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    for level in reversed(missing):
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            if level.is_dir():
                continue  # another writer made it first
            raise
        os.chmod(level, 0o700)
    return bool(missing)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
