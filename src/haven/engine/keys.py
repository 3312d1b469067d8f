"""Per-project data keys: the role the engine asks a key store for.

Contract of a key store (``KeyStore``):
- ``project_key(project)`` returns the project's 32-byte data key, read now (never cached
  by the store: a key the tenant revoked is refused at the next use), or raises
  ``KeyRevoked`` (the key existed and is gone, or Haven's access to it was withdrawn) or
  ``KeyUnavailable`` (never created/registered, or the store refuses Haven's credentials),
  both SecurityError (exit 7, HTTP 403), or ``KeyStoreUnreachable`` (exit 5, retryable).
  Errors name the project and the key's reference, never key material.
- A store never creates a key as a side effect of reading one: a missing key is an error,
  so a revoked key cannot silently be replaced by a new one (whose data would be a
  different, unreadable-by-the-old-key repository).

Where the key acts: the data of a group with a ``project`` lives in its own data-mover
repository inside the repository's url (``<url>/projects/<project>``), initialised with
the project key as master key (key-file mode: only a key check value is stored). Another
project's key, or the operator's repository key, fails that key check: WrongKey, exit 7.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

from haven.domain.errors import ValidationError

KEY_LEN = 32
# Keystone project ids are 32 hex digits; names are accepted too, as one safe path part
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@runtime_checkable
class KeyStore(Protocol):
    """Where the projects' data keys of a repository live (see the module doc)."""

    def project_key(self, project: str) -> bytes:
        """The project's data key (32 bytes), read now."""
        ...

    def reference(self, project: str) -> str:
        """Where the project's key is, for messages (no key material)."""
        ...


@runtime_checkable
class KeyCreation(Protocol):
    """A store where Haven makes and withdraws the keys itself (the local store)."""

    def create(self, project: str) -> str:
        """Make the project's key; its reference. An existing or revoked key is never
        replaced (ConflictError)."""
        ...

    def revoke(self, project: str) -> str:
        """Withdraw the project's key for good: every later use raises KeyRevoked."""
        ...


@runtime_checkable
class KeyRegistration(Protocol):
    """A store whose keys the tenants keep (Barbican): Haven records which secret is the
    project's key; the tenant revokes by withdrawing Haven's access to it."""

    def register(self, project: str, ref: str) -> str:
        """Record the project's secret reference; the resulting reference."""
        ...


def check_project(project: str, where: str) -> str:
    """``project`` as a safe path component, or ValidationError naming ``where``."""
    if not _PROJECT.match(project):
        raise ValidationError(
            where,
            f"{project!r} is not a project id (letters, digits, '-' and '_', at most 64, "
            "as Keystone's 32 hex digits)",
        )
    return project


def project_url(url: str, project: str) -> str:
    """The url of a project's part of a repository: ``<url>/projects/<project>``."""
    return f"{url.rstrip('/')}/projects/{project}"
