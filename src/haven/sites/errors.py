"""Errors of site drivers. Each states whether the same call may succeed if retried.

Messages name the site, server or disk and never contain credentials (libvirt URIs with
passwords must be redacted by the caller that builds them).
"""

from __future__ import annotations

from haven.domain.errors import ConflictError, ExternalError, NotFoundError, ValidationError


class SiteError(ExternalError):
    """A site (hypervisor, cloud) failed in a way that is not one of the cases below."""

    retryable = False


class SiteUnavailable(SiteError):
    """The site cannot be reached (daemon down, link cut). Retrying later may succeed."""

    retryable = True


class SiteIOError(SiteError):
    """Reading or writing a point's or a volume's data failed mid-way. Retry may succeed."""

    retryable = True


class GuestAgentError(SiteError):
    """The guest agent did not answer in time or refused a command (agent down, guest busy)."""

    retryable = True


class GuestExecError(SiteError):
    """A command run in the guest could not be started or did not finish in its timeout."""

    retryable = False


class QuiesceFailed(SiteError):
    """An application-consistent point was required but the group could not be frozen.

    Raised only when the request forbids falling back to crash consistency; all guests
    have been thawed before this is raised.
    """

    retryable = True


class SiteNotFound(NotFoundError):
    """A server, disk, network, volume or point the caller named does not exist at the site."""


class SiteConflict(ConflictError):
    """The object exists already or is in a state that forbids the action (e.g. running)."""


class UnsupportedCapability(SiteError):
    """The driver does not declare the capability the caller relied on."""


class SiteInputError(ValidationError):
    """A request to the driver is malformed (unknown disk target, bad mapping)."""
