"""OpenStack site driver (openstacksdk): a site is a clouds.yaml cloud plus a region."""

from haven.sites.openstack.connection import SiteRef, connect
from haven.sites.openstack.driver import OpenStackDriver

__all__ = ["OpenStackDriver", "SiteRef", "connect"]
