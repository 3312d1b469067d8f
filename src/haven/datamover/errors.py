"""Errors of the data mover. Every class derives from the shared contract in
:mod:`haven.domain.errors`, so the CLI and API map them to exit codes and HTTP statuses
without knowing about the data mover. Messages never contain keys or passphrases."""

from __future__ import annotations

from haven.domain.errors import (
    ConflictError,
    ExternalError,
    IntegrityError,
    NotFoundError,
    SecurityError,
    ValidationError,
)


class RepositoryNotFound(NotFoundError):
    """No repository (no ``config`` object) at the given location."""


class RepositoryExists(ConflictError):
    """``init`` was asked to create a repository where one already exists."""


class RepositoryLocked(ConflictError):
    """A conflicting lock is held (e.g. prune holds the exclusive lock) and did not go away
    within the wait time. Retrying later may succeed."""

    retryable = True


class WrongKey(SecurityError):
    """The passphrase or key file does not open this repository."""


class KeyEnvelopeRefused(SecurityError):
    """A key envelope asks for a key derivation beyond Haven's bounds (memory or work):
    refused before any work is done. A genuine envelope is never like that."""


class RollbackDetected(IntegrityError):
    """The repository's record of its points is older than one this host has seen, or
    differs from it: points were deleted or rolled back behind Haven's back."""


class KeyMissing(SecurityError):
    """No passphrase or key file was given but the repository needs one."""


class CorruptObject(IntegrityError):
    """An object failed authentication, decoding or its content hash. ``key`` names it."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"corrupt object {key}: {reason}")


class ChecksumMismatch(IntegrityError):
    """A restored volume does not match the checksum recorded in its manifest."""


class UnsupportedFormat(IntegrityError):
    """The repository uses a format version this code does not understand."""


class ManifestNotFound(NotFoundError):
    """No manifest with the given id, or for the given volume/point."""


class InvalidArgument(ValidationError):
    """A data-mover argument is out of range (chunk size, rate, extent...)."""


class RepositoryCheckFailed(IntegrityError):
    """``check`` found problems. ``affected`` lists the recovery points (manifest ids)
    whose data is damaged or unreachable."""

    def __init__(self, problems: list[str], affected: list[str]) -> None:
        self.problems = problems
        self.affected = affected
        head = f"repository check found {len(problems)} problem(s)"
        if affected:
            head += "; affected recovery points: " + ", ".join(affected)
        super().__init__("\n".join([head, *problems[:50]]))


class PruneRefused(IntegrityError):
    """Prune found the repository damaged and was not told exactly what to forget:
    collecting garbage now could delete data that live points need."""


class VolumeIOError(ExternalError):
    """Reading the source volume or writing the restore target failed (an OSError)."""

    retryable = False

    @classmethod
    def wrap(cls, what: str, exc: OSError) -> VolumeIOError:
        return cls(f"{what}: {exc.strerror or exc}")
