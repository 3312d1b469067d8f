"""Errors of the OpenStack site driver, on top of the shared site errors."""

from __future__ import annotations

from haven.sites.errors import SiteConflict, SiteError


class OpenStackSiteError(SiteError):
    """An OpenStack call failed or a resource reached an error state."""

    retryable = False


class OpenStackTimeout(OpenStackSiteError):
    """A resource did not reach the wanted state in time."""

    retryable = True


class PreflightFailed(SiteConflict):
    """The target site lacks something the recovery needs and cannot create it."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__("target lacks: " + "; ".join(missing))
        self.missing = missing
