"""Repository locks: what keeps prune from deleting a chunk a backup is about to use.

Contract:
- Backup (and anything that may add references to existing chunks) holds a SHARED lock
  from before it loads the chunk index until after its manifest is written.
- Prune holds the EXCLUSIVE lock for all of its work (forget, mark, repack, delete).
  So a backup never sees an index that prune is about to shrink, and prune never runs
  while a backup may reference a chunk it did not upload itself.
- Acquire = write own lock object, then list all locks. If a conflicting live lock
  exists, remove own, wait with jitter and retry. Two acquirers that race each see the
  other (listing after writing), so at most one of two conflicting holders proceeds;
  both may back off, never both proceed.
- A lock is stale when it was not refreshed for ``stale_after`` seconds, or when it
  belongs to this host and its process no longer exists (a SIGKILLed backup). Stale
  locks are removed by whoever finds them.
- Holders refresh their lock every ``refresh_every`` seconds in a daemon thread and
  call :meth:`RepoLock.ensure_held` before committing: if the lock was lost (e.g.
  removed as stale after a long stall) the commit is refused instead of risking a
  manifest that references chunks prune has already deleted.

Lock object ``locks/<lock_id>``, meta-sealed JSON (AD ``b"HVNL" || version || lock_id``).
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from haven.datamover.backends.base import Backend, ObjectNotFound
from haven.datamover.crypto import FORMAT_VERSION, KeyRing
from haven.datamover.errors import CorruptObject, RepositoryLocked

LOCK_PREFIX = "locks/"


class LockKind(StrEnum):
    SHARED = "shared"  # backup, restore: may add references to existing chunks
    EXCLUSIVE = "exclusive"  # prune: conflicts with every other lock
    REGISTER = "register"  # writing the next head (heads.py): one writer at a time


@dataclass(frozen=True, slots=True)
class LockPolicy:
    wait: float = 600.0  # how long acquire waits for a conflicting holder
    stale_after: float = 900.0
    refresh_every: float = 120.0
    retry_min: float = 0.05
    retry_max: float = 2.0
    # Wait this long between writing our lock and listing the others. Stores whose
    # listings lag behind writes (Swift container updates are asynchronous) need a
    # settle time above that lag for the "each racer sees the other" argument to hold.
    settle: float = 0.0


@dataclass(frozen=True, slots=True)
class LockInfo:
    lock_id: str
    kind: LockKind
    host: str
    pid: int
    created: float
    refreshed: float

    def is_stale(self, now: float, stale_after: float) -> bool:
        if now - self.refreshed > stale_after:
            return True
        if self.host == socket.gethostname() and self.pid != os.getpid():
            return not _pid_alive(self.pid)
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ad(lock_id: str) -> bytes:
    return b"HVNL" + bytes((FORMAT_VERSION,)) + lock_id.encode()


def _conflicts(a: LockKind, b: LockKind) -> bool:
    if LockKind.EXCLUSIVE in (a, b):
        return True
    return a is LockKind.REGISTER and b is LockKind.REGISTER


def read_locks(backend: Backend, keys: KeyRing) -> list[LockInfo | str]:
    """Every lock; an unreadable one is returned as its key (treated as stale)."""
    out: list[LockInfo | str] = []
    for info in backend.list(LOCK_PREFIX):
        lock_id = info.key[len(LOCK_PREFIX) :]
        try:
            if info.size > 4096:
                raise CorruptObject(info.key, "too large for a lock")
            doc = json.loads(keys.open_meta(backend.get(info.key), _ad(lock_id), info.key))
            out.append(
                LockInfo(
                    lock_id,
                    LockKind(doc["kind"]),
                    doc["host"],
                    int(doc["pid"]),
                    float(doc["created"]),
                    float(doc["refreshed"]),
                )
            )
        except ObjectNotFound:
            continue
        except (CorruptObject, ValueError, KeyError, TypeError, RecursionError):
            out.append(info.key)
    return out


class RepoLock:
    """A held lock. Use as a context manager; ``release`` is idempotent."""

    def __init__(self, backend: Backend, keys: KeyRing, kind: LockKind, policy: LockPolicy) -> None:
        self.backend, self.keys, self.kind, self.policy = backend, keys, kind, policy
        self.lock_id = os.urandom(12).hex()
        self.created = time.time()
        self._last_ok = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return LOCK_PREFIX + self.lock_id

    def _write(self) -> None:
        now = time.time()
        doc = {
            "kind": self.kind.value,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "created": self.created,
            "refreshed": now,
        }
        self.backend.put(self.key, self.keys.seal_meta(json.dumps(doc).encode(), _ad(self.lock_id)))
        self._last_ok = now

    def acquire(self) -> RepoLock:
        deadline = time.monotonic() + self.policy.wait
        delay = self.policy.retry_min
        while True:
            self._write()
            if self.policy.settle > 0:
                time.sleep(self.policy.settle)
            blocking = self._conflicting()
            if not blocking:
                break
            self.backend.delete(self.key)
            if time.monotonic() > deadline:
                raise RepositoryLocked(
                    f"repository is locked ({', '.join(blocking)}); try again later"
                )
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.policy.retry_max)
        self._thread = threading.Thread(target=self._refresher, name="haven-lock", daemon=True)
        self._thread.start()
        return self

    def _conflicting(self) -> list[str]:
        now = time.time()
        blocking: list[str] = []
        for lk in read_locks(self.backend, self.keys):
            if isinstance(lk, str):
                self.backend.delete(lk)
                continue
            if lk.lock_id == self.lock_id:
                continue
            if lk.is_stale(now, self.policy.stale_after):
                self.backend.delete(LOCK_PREFIX + lk.lock_id)
                continue
            if _conflicts(self.kind, lk.kind):
                blocking.append(f"{lk.kind.value} lock by pid {lk.pid} on {lk.host}")
        return blocking

    def _refresher(self) -> None:
        while not self._stop.wait(self.policy.refresh_every):
            try:
                self._write()
            except Exception:  # a later ensure_held() reports the loss
                continue

    def ensure_held(self) -> None:
        """Raise :class:`RepositoryLocked` if this lock may have been taken away."""
        if time.time() - self._last_ok > self.policy.stale_after * 0.8 or not self.backend.exists(
            self.key
        ):
            raise RepositoryLocked("repository lock was lost; refusing to commit")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.backend.delete(self.key)

    def __enter__(self) -> RepoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
