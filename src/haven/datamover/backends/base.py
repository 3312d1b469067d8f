"""The storage backend protocol: a flat, immutable-object key/value store.

Contract (every backend passes tests/contract/test_backends.py):
- Keys are ``/``-separated relative paths of ``[A-Za-z0-9._-]`` segments, e.g.
  ``data/ab/ab12...``. Backends may map them to paths or object names.
- ``put`` is atomic: a reader sees the whole object or no object, never a prefix. Putting
  an existing key replaces it atomically (the repository only does so for keys whose
  content is identical or for mutable metadata such as locks).
- ``get``/``get_range``/``stat`` of a missing key raise :class:`ObjectNotFound`.
- ``delete`` of a missing key is not an error (idempotent).
- ``list(prefix)`` yields every key starting with ``prefix`` with its size, in no
  particular order.
- Transient failures (timeouts, 5xx, connection resets) raise
  :class:`TransientBackendError`; wrappers retry only those.
- ``describe()`` returns a location for humans and logs with no secrets in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from haven.domain.errors import ExternalError, NotFoundError


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


class BackendError(ExternalError):
    """A backend failed in a way retrying will not fix."""

    retryable = False


class TransientBackendError(BackendError):
    """A backend failed in a way that retrying with backoff may fix."""

    retryable = True


class ObjectNotFound(NotFoundError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"object not found: {key}")


@runtime_checkable
class Backend(Protocol):
    def put(self, key: str, data: bytes | memoryview) -> None: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, offset: int, length: int) -> bytes: ...

    def stat(self, key: str) -> ObjectInfo: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...
