"""Errors of the OpenStack site driver, on top of the shared site errors."""

from __future__ import annotations

from haven.sites.errors import SiteError


class OpenStackSiteError(SiteError):
    """An OpenStack call failed or a resource reached an error state."""

    retryable = False


class OpenStackTimeout(OpenStackSiteError):
    """A resource did not reach the wanted state in time."""

    retryable = True
