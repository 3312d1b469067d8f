"""Failback's pure parts: home names from the DR inventory, the inverse mapping, and the
inventory's floating IP networks surviving the point's JSON."""

from __future__ import annotations

import json
from dataclasses import replace

from haven.sites.openstack.failback import _home_names
from haven.sites.openstack.floating import external_network
from haven.sites.openstack.model import AppInventory, NicRec, RouterRec, ServerRec, VolumeRec
from haven.sites.openstack.recovery import Mapping


def _inv(site: str, servers: tuple[ServerRec, ...], **kw: object) -> AppInventory:
    return AppInventory(
        site=site,
        servers=servers,
        flavors=(),
        keypairs=(),
        images=(),
        volume_types=(),
        networks=(),
        routers=(RouterRec("r", "public", ("s",)),),
        security_groups=(),
        floating_ips=kw.pop("floating_ips", ()),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def _server(name: str, sid: str, vols: tuple[VolumeRec, ...], meta: dict[str, str]) -> ServerRec:
    nic = NicRec("net", ("10.0.0.5",), None)
    return ServerRec(name, "small", None, (nic,), (), vols, None, None, meta, (), sid)


ORIGINAL = _inv(
    "home",
    (
        _server(
            "web", "s-home", (VolumeRec("web-boot", 1, True, None, "/dev/vda", 0, "v-home"),), {}
        ),
    ),
    floating_ips=(("203.0.113.9", "web", "10.0.0.5"),),
    floating_ip_networks={"203.0.113.9": "public"},
)


def test_home_names_follow_haven_source_metadata() -> None:
    dr_vol = VolumeRec(
        "dr-web-boot", 1, True, None, "/dev/vda", 0, "v-dr", {"haven:source": "v-home"}
    )
    dr = _inv(
        "dr",
        (_server("dr-web", "s-dr", (dr_vol,), {"haven:source": "s-home", "role": "web"}),),
        floating_ips=(("203.0.113.200", "dr-web", "10.0.0.5"),),
        floating_ip_networks={"203.0.113.200": "public-dr"},
    )
    home = _home_names(dr, ORIGINAL)
    [s] = home.servers
    assert s.name == "web" and s.metadata == {"role": "web"}
    # the volume takes its original name but keeps the DR id the point's backups use
    assert s.volumes[0].name == "web-boot" and s.volumes[0].source_id == "v-dr"
    # the floating IP goes back to its home address and network
    assert home.floating_ips == (("203.0.113.9", "web", "10.0.0.5"),)
    assert external_network(home, "203.0.113.9") == "public"


def test_unknown_servers_keep_their_names() -> None:
    dr = _inv(
        "dr",
        (_server("extra", "s-x", (), {}),),
        floating_ips=(("198.51.100.1", "extra", "10.0.0.5"),),
    )
    home = _home_names(dr, ORIGINAL)
    assert [s.name for s in home.servers] == ["extra"]
    assert home.floating_ips == (("198.51.100.1", "extra", "10.0.0.5"),)
    # no recorded network: the routers' gateway network stands in
    assert external_network(home, "198.51.100.1") == "public"


def test_inverse_mapping() -> None:
    m = Mapping(networks={"net": "net-dr"}, flavors={"small": "m1"}, project="p2")
    back = m.inverse()
    assert back.net("net-dr") == "net" and back.flavors == {"m1": "small"}
    assert back.project is None and back.server_prefix == ""


def test_floating_ip_networks_round_trip() -> None:
    inv = replace(ORIGINAL, role_assignments=(("admin", "admin"),), project="admin")
    again = AppInventory.from_dict(json.loads(json.dumps(inv.to_dict())))
    assert again == inv and again.floating_ip_networks == {"203.0.113.9": "public"}
    legacy = inv.to_dict()
    del legacy["floating_ip_networks"]  # a point written before the field existed
    assert AppInventory.from_dict(legacy).floating_ip_networks == {}


def test_address_in_pool() -> None:
    from types import SimpleNamespace

    from haven.sites.openstack.floating import _in_pool

    sub = SimpleNamespace(
        cidr="203.0.113.128/25",
        allocation_pools=[{"start": "203.0.113.130", "end": "203.0.113.254"}],
    )
    conn = SimpleNamespace(network=SimpleNamespace(subnets=lambda network_id: [sub]))
    ext = SimpleNamespace(id="ext")
    assert _in_pool(conn, ext, "203.0.113.200")  # type: ignore[arg-type]
    assert not _in_pool(conn, ext, "203.0.113.129")  # type: ignore[arg-type]  # outside the pool
    assert not _in_pool(conn, ext, "203.0.113.9")  # type: ignore[arg-type]  # outside the subnet
    assert not _in_pool(conn, ext, "2001:db8::1")  # type: ignore[arg-type]
