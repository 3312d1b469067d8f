"""Site driver for libvirt/QEMU hosts (needs the `libvirt` extra: libvirt-python)."""

from haven.sites.libvirt.driver import LibvirtDriver, LibvirtSiteConfig

__all__ = ["LibvirtDriver", "LibvirtSiteConfig"]
