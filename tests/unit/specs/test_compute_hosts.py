"""``sites[].compute_hosts`` (OpenStack): Nova compute host -> libvirt URI, checked."""

from __future__ import annotations

from typing import Any

from tests.unit.specs.test_bad_input import problems

from haven.domain.sites import Site
from haven.specs import load_spec_bytes


def _spec(site: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "haven/v1", "sites": [site]}


def test_valid_hosts_reach_the_domain_site() -> None:
    hosts = {
        "cmp-1": "qemu+tls://cmp-1/system",
        "cmp-2": "qemu+ssh://haven@cmp-2/system",
        "lab": "qemu+unix:///system?socket=/run/lab/libvirt-sock",
    }
    site = {
        "name": "r1",
        "driver": "openstack",
        "cloud": "c",
        "region": "R",
        "compute_hosts": hosts,
    }
    assert problems(_spec(site)) == []
    import yaml

    loaded: Site = load_spec_bytes(yaml.safe_dump(_spec(site)).encode()).resources.sites[0]
    assert loaded.compute_hosts == hosts


def test_what_haven_cannot_use_is_refused_by_field() -> None:
    site = {
        "name": "r1",
        "driver": "openstack",
        "cloud": "c",
        "compute_hosts": {
            "cmp-1": "http://cmp-1:8080",
            "cmp-2": "qemu:///session",
            "cmp-3": "qemu+tcp://admin:s3cret@cmp-3/system",
            "bad host": "qemu:///system",
        },
    }
    msgs = problems(_spec(site))
    assert any(m.startswith("sites.r1.compute_hosts.cmp-1: not a libvirt URI") for m in msgs)
    assert any(m.startswith("sites.r1.compute_hosts.cmp-2: not a libvirt URI") for m in msgs)
    assert any(
        m.startswith("sites.r1.compute_hosts.cmp-3: the URI carries a password") for m in msgs
    )
    assert any(m.startswith("sites.r1.compute_hosts.bad host: a Nova compute host") for m in msgs)
    assert not any("s3cret" in m for m in msgs)  # the password never reaches an error
    libvirt_site = {
        "name": "k",
        "driver": "libvirt",
        "uri": "qemu:///system",
        "scratch_dir": "/var/lib/haven/scratch",
        "compute_hosts": {"a": "qemu:///system"},
    }
    assert problems(_spec(libvirt_site)) == [
        "sites.k.compute_hosts: only applies to openstack sites (Nova compute host -> libvirt URI)"
    ]
