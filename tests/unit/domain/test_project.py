"""A project snapshot survives the catalog's JSON form unchanged (points keep it)."""

from __future__ import annotations

import json

from haven.domain.codec import from_data, to_data
from haven.domain.project import (
    FlavorDef,
    FloatingIpDef,
    IpRange,
    KeypairDef,
    NetworkDef,
    PortDef,
    ProjectSnapshot,
    RoleAssignment,
    Route,
    RouterDef,
    RuleDef,
    SecurityGroupDef,
    ServerPlacement,
    SubnetDef,
)


def snapshot() -> ProjectSnapshot:
    sub = SubnetDef(
        "app-sub",
        "10.0.0.0/24",
        4,
        "10.0.0.1",
        True,
        (IpRange("10.0.0.2", "10.0.0.254"),),
        ("192.0.2.53",),
    )
    return ProjectSnapshot(
        project="shop",
        role_assignments=(RoleAssignment("alice", "member"),),
        flavors=(FlavorDef("small", 1, 128, 1, extra_specs={"hw:mem_page_size": "small"}),),
        keypairs=(KeypairDef("key", "ssh-ed25519 AAAA test"),),
        networks=(NetworkDef("app-net", (sub,), 1450), NetworkDef("public", external=True)),
        routers=(RouterDef("r", "public", ("app-sub",), (Route("0.0.0.0/0", "10.0.0.254"),)),),
        security_groups=(
            SecurityGroupDef(
                "web",
                "web tier",
                (
                    RuleDef("ingress", "IPv4", "tcp", 80, 80, "0.0.0.0/0"),
                    RuleDef("ingress", "IPv4", None, None, None, None, "web"),
                ),
            ),
        ),
        volume_types=("fast",),
        floating_ips=(FloatingIpDef("203.0.113.9", "db", "10.0.0.5", "public"),),
        servers=(
            ServerPlacement(
                "db",
                "small",
                "key",
                ("web",),
                (PortDef("app-net", ("10.0.0.5",), "app-sub", "fa:16:3e:00:00:01"),),
                {"vda": "fast"},
            ),
        ),
    )


def test_project_snapshot_round_trips_through_json() -> None:
    snap = snapshot()
    again = from_data(ProjectSnapshot, json.loads(json.dumps(to_data(snap))))
    assert again == snap
    assert again.placement("db") == snap.servers[0] and again.placement("web") is None
    assert again.network("public") == NetworkDef("public", external=True)
