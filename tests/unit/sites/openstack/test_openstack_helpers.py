"""Pure helpers of the OpenStack driver: Cinder backup records, floating-IP pools."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

from haven.sites.openstack.backups import _parent_of
from haven.sites.openstack.placement import _in_pool


def test_parent_of_backup_record() -> None:
    url = base64.b64encode(json.dumps({"id": "b2", "parent_id": "b1"}).encode()).decode()
    assert _parent_of(url) == "b1"
    assert _parent_of("not base64 json") is None


def test_address_in_pool() -> None:
    sub = SimpleNamespace(
        cidr="203.0.113.128/25",
        allocation_pools=[{"start": "203.0.113.130", "end": "203.0.113.254"}],
    )
    conn = SimpleNamespace(network=SimpleNamespace(subnets=lambda network_id: [sub]))
    ext = SimpleNamespace(id="ext")
    assert _in_pool(conn, ext, "203.0.113.200")
    assert not _in_pool(conn, ext, "203.0.113.129")  # outside the pool
    assert not _in_pool(conn, ext, "203.0.113.9")  # outside the subnet
    assert not _in_pool(conn, ext, "2001:db8::1")
    assert not _in_pool(conn, ext, "not an address")
