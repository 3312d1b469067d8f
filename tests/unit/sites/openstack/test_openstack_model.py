"""The captured OpenStack inventory survives the recovery point's JSON unchanged."""

from __future__ import annotations

import json

from haven.sites.openstack.backups import _parent_of
from haven.sites.openstack.model import (
    AppInventory,
    FlavorRec,
    KeypairRec,
    NetworkRec,
    NicRec,
    RouterRec,
    RuleRec,
    SecurityGroupRec,
    ServerRec,
    SubnetRec,
    VolumeRec,
)
from haven.sites.openstack.recovery import Ledger, Mapping


def _inventory() -> AppInventory:
    boot = VolumeRec("db-boot", 1, True, "__DEFAULT__", "/dev/sda", 0, "v1", {"k": "v"})
    data = VolumeRec("db-data", 2, False, "__DEFAULT__", "/dev/sdb", None, "v2")
    nic = NicRec("app-net", ("10.0.0.5",), "fa:16:3e:00:00:01", "app-subnet", "")
    db = ServerRec(
        "db",
        "small",
        "key",
        (nic,),
        ("web",),
        (boot, data),
        None,
        "nova",
        {"role": "db"},
        ("203.0.113.9",),
        "s1",
    )
    subnet = SubnetRec(
        "app-subnet",
        "10.0.0.0/24",
        4,
        "10.0.0.1",
        True,
        (("10.0.0.2", "10.0.0.254"),),
        ("192.0.2.53",),
    )
    return AppInventory(
        site="lab/RegionOne",
        servers=(db,),
        flavors=(FlavorRec("small", 1, 128, 0),),
        keypairs=(KeypairRec("key", "ssh-ed25519 AAAA test"),),
        images=(),
        volume_types=("__DEFAULT__",),
        networks=(NetworkRec("app-net", (subnet,), 1450),),
        routers=(RouterRec("r", "public", ("app-subnet",), (("0.0.0.0/0", "10.0.0.254"),)),),
        security_groups=(
            SecurityGroupRec(
                "web",
                "",
                (
                    RuleRec("ingress", "IPv4", "tcp", 80, 80, "0.0.0.0/0", None),
                    RuleRec("ingress", "IPv4", None, None, None, None, "web"),
                ),
            ),
        ),
        floating_ips=(("203.0.113.9", "db", "10.0.0.5"),),
        project="admin",
        role_assignments=(("admin", "admin"),),
    )


def test_round_trip_through_json() -> None:
    inv = _inventory()
    again = AppInventory.from_dict(json.loads(json.dumps(inv.to_dict())))
    assert again == inv
    assert again.server("db").boot_volume == inv.servers[0].volumes[0]


def test_mapping_and_ledger() -> None:
    m = Mapping(networks={"app-net": "dr-net"})
    assert m.net("app-net") == "dr-net" and m.net("other") == "other"
    led = Ledger()
    led.add("network", "n1")
    led.add("server", "s1")
    led.add("network", "n2")
    assert led.ids("network") == ["n1", "n2"]


def test_parent_of_backup_record() -> None:
    import base64

    url = base64.b64encode(json.dumps({"id": "b2", "parent_id": "b1"}).encode()).decode()
    assert _parent_of(url) == "b1"
    assert _parent_of("not base64 json") is None
