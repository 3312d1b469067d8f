"""Haven's error contract.

Every error Haven raises on purpose derives from :class:`HavenError`. Each error class
states whether retrying the same call may succeed, which CLI exit code it maps to and
which HTTP status the API answers with. Messages must never contain secrets.

Exit codes (documented in README.md):
    0  success
    1  unexpected internal error (a bug)
    2  bad input: invalid spec, field, argument or reference
    3  not found
    4  conflict: the resource is busy (locked) or in a state that forbids the action,
       or a project's quota does not allow it (QuotaExceeded)
    5  runtime failure of an external part (site, storage backend, guest)
    6  data integrity failure (corruption, authentication tag mismatch, checksum mismatch)
    7  security failure (wrong passphrase or key)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    BAD_INPUT = 2
    NOT_FOUND = 3
    CONFLICT = 4
    RUNTIME = 5
    INTEGRITY = 6
    SECURITY = 7


def _rebuild(cls: type[HavenError], message: str, state: dict[str, object]) -> HavenError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class HavenError(Exception):
    """Base of all deliberate Haven errors.

    Picklable whatever a subclass's constructor takes (the durable-workflow engine stores
    a failed step's exception and raises it again on replay): an error is rebuilt from its
    message and attributes, not by calling its constructor again."""

    retryable: bool = False
    exit_code: ExitCode = ExitCode.INTERNAL
    http_status: int = 500

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class ValidationError(HavenError):
    """Bad input. ``path`` names the offending field, e.g. ``plans.erp.stages[1].depends_on``."""

    exit_code = ExitCode.BAD_INPUT
    http_status = 422

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class ValidationErrors(HavenError):
    """Several validation problems found in one pass; all are reported at once."""

    exit_code = ExitCode.BAD_INPUT
    http_status = 422

    def __init__(self, errors: list[ValidationError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class NotFoundError(HavenError):
    exit_code = ExitCode.NOT_FOUND
    http_status = 404


class ConflictError(HavenError):
    exit_code = ExitCode.CONFLICT
    http_status = 409


class IllegalTransition(ConflictError):
    """A state machine was asked to move along an edge its transition table forbids."""

    def __init__(self, machine: str, current: str, target: str, allowed: frozenset[str]) -> None:
        self.machine = machine
        self.current = current
        self.target = target
        allowed_txt = ", ".join(sorted(allowed)) or "none (terminal state)"
        super().__init__(
            f"{machine}: cannot go from {current!r} to {target!r} (allowed from {current!r}: "
            f"{allowed_txt})"
        )


class ForbiddenError(HavenError):
    """The caller's roles do not allow the action (the API's policy, or a part of a spec
    only an admin may apply). Only for what the caller can see: another project's object
    is a NotFoundError, never this."""

    exit_code = ExitCode.SECURITY
    http_status = 403


class ExternalError(HavenError):
    """A site, storage backend or guest failed. Subclasses decide ``retryable``."""

    exit_code = ExitCode.RUNTIME
    http_status = 502


class IntegrityError(HavenError):
    exit_code = ExitCode.INTEGRITY
    http_status = 500


class SecurityError(HavenError):
    exit_code = ExitCode.SECURITY
    http_status = 403


class QuotaExceeded(ConflictError):
    """A project's quota does not allow the action; nothing was done. Exit 4 (conflict:
    the request is valid, the project's current use forbids it, and the same call
    succeeds once use falls or the limit is raised). HTTP 403, as OpenStack services
    answer a count quota; :class:`SizeQuotaExceeded` (a byte quota) answers 413."""

    http_status = 403

    def __init__(self, project: str, quota: str, limit: int, in_use: int, wanted: int) -> None:
        self.project = project
        self.quota = quota
        self.limit = limit
        self.in_use = in_use
        self.wanted = wanted
        super().__init__(
            f"project {project}: quota {quota} exceeded: limit {limit}, in use {in_use}, "
            f"this would make {wanted}; free some or ask an administrator to raise it "
            f"(haven quota set {project} --{quota.replace('_', '-')} N)"
        )


class SizeQuotaExceeded(QuotaExceeded):
    """A byte quota (protected bytes) does not allow the action: HTTP 413."""

    http_status = 413


def error_document(exc: HavenError) -> dict[str, object]:
    """The one JSON shape of an error, for the CLI's ``--json`` and the REST API alike:
    ``{"error": {type, message, retryable, exit_code[, problems]}}``. The message is the
    error's own text, which must never hold a secret."""
    body: dict[str, object] = {
        "type": type(exc).__name__,
        "message": str(exc),
        "retryable": exc.retryable,
        "exit_code": int(exc.exit_code),
    }
    if isinstance(exc, ValidationErrors):
        body["problems"] = [{"path": e.path, "message": e.message} for e in exc.errors]
    elif isinstance(exc, ValidationError) and exc.path:
        body["problems"] = [{"path": exc.path, "message": exc.message}]
    return {"error": body}


class KeyUnavailable(SecurityError):
    """A project's data key cannot be had: never created or registered, or the key store
    refuses Haven's credentials. Names the project and the key's reference, never key
    material. Nothing is read or written without the key (never plaintext instead)."""

    def __init__(self, project: str, ref: str, reason: str) -> None:
        self.project = project
        self.ref = ref
        self.reason = reason
        super().__init__(f"the data key of project {project} ({ref}) is unavailable: {reason}")


class KeyRevoked(SecurityError):
    """The project's data key existed and was revoked (deleted, or Haven's read access
    withdrawn by the tenant): its recovery data can neither be written nor read until the
    tenant grants it again."""

    def __init__(self, project: str, ref: str, reason: str) -> None:
        self.project = project
        self.ref = ref
        self.reason = reason
        super().__init__(f"the data key of project {project} ({ref}) was revoked: {reason}")


class KeyStoreUnreachable(ExternalError):
    """The key store did not answer (a network or server failure, not a refusal):
    retrying may succeed. Exit 5, never plaintext instead."""

    retryable = True

    def __init__(self, store: str, reason: str) -> None:
        self.store = store
        self.reason = reason
        super().__init__(f"key store {store} unreachable: {reason}")
