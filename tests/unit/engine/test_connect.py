"""Drivers are built from the site's definition only: no path is a built-in default."""

from __future__ import annotations

import pytest

from haven.domain.errors import ValidationError
from haven.domain.sites import Site, SiteDriver
from haven.engine import connect


def test_a_libvirt_site_without_scratch_dir_is_refused_naming_the_field() -> None:
    # e.g. a catalog written before the field existed: no driver, no lab directory guessed
    site = Site("old-site", SiteDriver.LIBVIRT, uri="qemu:///system")
    with pytest.raises(ValidationError) as info:
        connect.driver_for(site)
    assert info.value.path == "sites.old-site.scratch_dir"
    assert "absolute directory on the libvirt host" in str(info.value)
