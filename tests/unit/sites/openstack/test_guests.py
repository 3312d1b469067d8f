"""Guest agents through the compute host's libvirt: finding a server's domain, and saying
why not (host unmapped, attributes hidden, no such domain) without showing the URI.
libvirt's own test driver stands in for a compute host."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from haven.sites.errors import SiteNotFound, UnsupportedCapability
from haven.sites.openstack.guests import ComputeHosts

pytest.importorskip("libvirt")

URI = "test:///default"


def _server(**kw: object) -> SimpleNamespace:
    base = {
        "name": "db",
        "hypervisor_hostname": "cmp-1",
        "compute_host": "cmp-1",
        "instance_name": "test",
    }
    return SimpleNamespace(**{**base, **kw})


def test_a_server_is_its_instance_name_on_its_host() -> None:
    hosts = ComputeHosts({"cmp-1": URI})
    try:
        assert hosts.domain(_server()).name() == "test"
        # the test driver's domain has no guest agent: a ping says no, it does not raise
        assert hosts.agent_ping(_server(), 1.0) is False
        with pytest.raises(SiteNotFound) as exc:
            hosts.domain(_server(instance_name="instance-0000002a"))
        assert "instance-0000002a on cmp-1" in str(exc.value) and URI not in str(exc.value)
    finally:
        hosts.close()


def test_why_no_guest_is_reachable() -> None:
    with pytest.raises(UnsupportedCapability, match="no compute_hosts configured"):
        ComputeHosts({}).domain(_server())
    with pytest.raises(UnsupportedCapability, match="no libvirt URI for host 'cmp-9'"):
        ComputeHosts({"cmp-1": URI}).domain(
            _server(hypervisor_hostname="cmp-9", compute_host="cmp-9")
        )
    with pytest.raises(UnsupportedCapability, match="admin-only"):
        ComputeHosts({"cmp-1": URI}).domain(_server(instance_name=None))
    assert ComputeHosts({"cmp-1": URI}).agent_ping(_server(instance_name=None), 1.0) is False
