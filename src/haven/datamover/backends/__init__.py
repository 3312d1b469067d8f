"""Storage backends and the URL factory.

``open_backend(url, credentials=None)``:
- ``/path`` or ``file:///path`` -> :class:`LocalBackend`
- ``memory://name`` -> a process-wide :class:`MemoryBackend` registered under ``name``
- ``<scheme>://...`` -> ``register_scheme(scheme, factory)`` entries, else, for ``swift``
  and ``s3``, the module ``haven.datamover.backends.<scheme>`` is imported on first use
  and its ``from_url(url, credentials=...) -> Backend`` is called. This is how
  ``swift://container/prefix`` (``swift.py``, OpenStack Swift) and ``s3://bucket/prefix``
  (``s3.py``, any S3 endpoint, signed with AWS Signature V4 by ``sigv4.py``) plug in.

``credentials`` are a repository's settings by name (values already read from their
secret references by the caller), for example ``{"access_key": ..., "secret_key": ...}``
for S3 or ``{"auth_url": ..., "user": ..., "key": ...}`` for Swift. They override the
backend's environment variables (``HAVEN_S3_*``, ``HAVEN_SWIFT_*``; each module's
docstring lists the names). A name the backend does not know, or any credentials for a
backend that takes none (local, memory, registered schemes), is refused with
:class:`~haven.datamover.errors.InvalidArgument` naming ``credentials.<name>``: nothing
is accepted that is not used. Credentials never appear in a URL: a URL with user info is
refused.

Options common to all: ``limit`` (bytes/s or "50MiB/s") adds a token-bucket cap,
``retries`` wraps with :class:`RetryingBackend` (default on for remote schemes),
``concurrency`` bounds calls in flight.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType

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
# remote schemes served by a module of this package with ``from_url(url, credentials=)``
_MODULES = {"swift": "haven.datamover.backends.swift", "s3": "haven.datamover.backends.s3"}


def register_scheme(scheme: str, factory: BackendFactory) -> None:
    _SCHEMES[scheme] = factory


def _memory(url: str) -> Backend:
    name = url.split("://", 1)[1] or "default"
    return _MEMORY.setdefault(name, MemoryBackend(name))


def _no_credentials(kind: str, credentials: Mapping[str, str]) -> None:
    if credentials:
        name = sorted(credentials)[0]
        raise InvalidArgument(
            f"credentials.{name}", f"{kind} repositories take no credentials; remove them"
        )


def _remote_module(scheme: str) -> ModuleType:
    try:
        # imported on use: each needs its extra (httpx), which a local setup may lack
        return importlib.import_module(_MODULES[scheme])
    except ImportError as exc:
        raise InvalidArgument(
            "repo",
            f"{scheme}:// repositories need the extra haven-dr[{scheme}] ({exc.name} missing)",
        ) from None


def credential_names(url: str) -> tuple[str, ...]:
    """The ``credentials`` names the backend for ``url`` takes, in its documented order
    (empty: it takes none). For checking a repository's definition before it is opened."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _MODULES or scheme in _SCHEMES:
        return ()
    names: tuple[str, ...] = tuple(_remote_module(scheme).SETTINGS)
    return names


def _resolve(url: str, credentials: Mapping[str, str]) -> tuple[Backend, bool]:
    """(backend, is_remote)"""
    if "://" not in url:
        _no_credentials("local", credentials)
        return LocalBackend(url), False
    scheme = url.split("://", 1)[0].lower()
    if scheme == "file":
        _no_credentials("local", credentials)
        return LocalBackend(url[len("file://") :]), False
    if scheme == "memory":
        _no_credentials("memory", credentials)
        return _memory(url), False
    factory = _SCHEMES.get(scheme)
    if factory is not None:
        _no_credentials(f"{scheme}://", credentials)
        return factory(url), True
    if scheme not in _MODULES:
        raise InvalidArgument(
            "repo",
            f"unsupported repository scheme {scheme!r} (use a path, "
            "swift://container/prefix or s3://bucket/prefix)",
        )
    module = _remote_module(scheme)
    backend: Backend = module.from_url(url, credentials=credentials)
    return backend, True


def open_backend(
    url: str,
    *,
    credentials: Mapping[str, str] | None = None,
    limit: float | str | None = None,
    retries: bool | None = None,
    concurrency: int | None = None,
) -> Backend:
    """The backend for ``url`` (see the module docstring), wrapped as asked."""
    backend, remote = _resolve(url, credentials or {})
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
    "credential_names",
    "open_backend",
    "parse_rate",
    "register_scheme",
    "throttle",
]
