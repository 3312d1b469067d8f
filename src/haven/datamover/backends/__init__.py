"""Storage backends and the URL factory.

``open_backend(url)``:
- ``/path`` or ``file:///path`` -> :class:`LocalBackend`
- ``memory://name`` -> a process-wide :class:`MemoryBackend` registered under ``name``
- ``<scheme>://...`` -> ``register_scheme(scheme, factory)`` entries, else the module
  ``haven.datamover.backends.<scheme>`` is imported and its ``from_url(url) -> Backend``
  is called (this is how ``swift://container/prefix`` plugs in).

Options common to all: ``limit`` (bytes/s or "50MiB/s") adds a token-bucket cap,
``retries`` wraps with :class:`RetryingBackend` (default on for remote schemes),
``concurrency`` bounds calls in flight.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from haven.datamover.backends.base import (
    Backend,
    BackendError,
    ObjectInfo,
    ObjectNotFound,
    TransientBackendError,
)
from haven.datamover.backends.local import LocalBackend
from haven.datamover.backends.memory import MemoryBackend
from haven.datamover.backends.wrappers import (
    ConcurrencyLimitedBackend,
    RetryingBackend,
    ThrottledBackend,
    TokenBucket,
    parse_rate,
    throttle,
)
from haven.datamover.errors import InvalidArgument

BackendFactory = Callable[[str], Backend]
_SCHEMES: dict[str, BackendFactory] = {}
_MEMORY: dict[str, MemoryBackend] = {}


def register_scheme(scheme: str, factory: BackendFactory) -> None:
    _SCHEMES[scheme] = factory


def _memory(url: str) -> Backend:
    name = url.split("://", 1)[1] or "default"
    return _MEMORY.setdefault(name, MemoryBackend(name))


def _resolve(url: str) -> tuple[Backend, bool]:
    """(backend, is_remote)"""
    if "://" not in url:
        return LocalBackend(url), False
    scheme = url.split("://", 1)[0].lower()
    if scheme == "file":
        return LocalBackend(url[len("file://") :]), False
    if scheme == "memory":
        return _memory(url), False
    factory = _SCHEMES.get(scheme)
    if factory is None:
        try:
            module = importlib.import_module(f"haven.datamover.backends.{scheme}")
        except ImportError:
            raise InvalidArgument("repo", f"unsupported repository scheme {scheme!r}") from None
        factory = module.from_url
    return factory(url), True


def open_backend(
    url: str,
    *,
    limit: float | str | None = None,
    retries: bool | None = None,
    concurrency: int | None = None,
) -> Backend:
    backend, remote = _resolve(url)
    if retries if retries is not None else remote:
        backend = RetryingBackend(backend)
    if limit:
        backend = throttle(backend, limit)
    if concurrency:
        backend = ConcurrencyLimitedBackend(backend, concurrency)
    return backend


__all__ = [
    "Backend",
    "BackendError",
    "ConcurrencyLimitedBackend",
    "LocalBackend",
    "MemoryBackend",
    "ObjectInfo",
    "ObjectNotFound",
    "RetryingBackend",
    "ThrottledBackend",
    "TokenBucket",
    "TransientBackendError",
    "open_backend",
    "parse_rate",
    "register_scheme",
    "throttle",
]
