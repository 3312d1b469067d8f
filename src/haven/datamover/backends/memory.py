"""In-memory backend for unit tests. Thread-safe; objects are immutable bytes.

``fail_next`` lets tests inject errors (e.g. :class:`TransientBackendError`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from haven.datamover.backends.base import BackendError, ObjectInfo, ObjectNotFound
from haven.datamover.backends.keys import check_key


class MemoryBackend:
    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.fail_next: list[BackendError] = []

    def _maybe_fail(self) -> None:
        with self._lock:
            exc = self.fail_next.pop(0) if self.fail_next else None
        if exc is not None:
            raise exc

    def put(self, key: str, data: bytes | memoryview) -> None:
        check_key(key)
        self._maybe_fail()
        blob = bytes(data)
        with self._lock:
            self.objects[key] = blob

    def get(self, key: str) -> bytes:
        self._maybe_fail()
        with self._lock:
            try:
                return self.objects[key]
            except KeyError:
                raise ObjectNotFound(key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def stat(self, key: str) -> ObjectInfo:
        return ObjectInfo(key, len(self.get(key)))

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self.objects

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._maybe_fail()
        with self._lock:
            items = [ObjectInfo(k, len(v)) for k, v in self.objects.items() if k.startswith(prefix)]
        return iter(items)

    def delete(self, key: str) -> None:
        self._maybe_fail()
        with self._lock:
            self.objects.pop(key, None)

    def describe(self) -> str:
        return f"memory://{self.name}"

    def close(self) -> None:
        pass
