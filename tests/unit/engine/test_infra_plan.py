"""The preflight's rules (haven.engine.infra_plan), one by one, as pure functions."""

from __future__ import annotations

from dataclasses import replace

from haven.domain.plans import IpMapping, Mappings
from haven.domain.project import (
    AddressUse,
    FoundNetwork,
    FoundSubnet,
    LedgerKind,
    NetworkDef,
    RoleAssignment,
    SecurityGroupDef,
    SiteSurvey,
)
from haven.engine.infra_plan import Target, plan_infrastructure, survey_request
from haven.engine.workflows.failback import inverse
from tests.unit.domain.test_project import snapshot

PATH = "plans.p.mappings"
PUBLIC = FoundNetwork("public", True, (FoundSubnet("pub", "203.0.113.0/24"),))
BARE = SiteSurvey(networks=(PUBLIC,), users=("alice",), roles=("member",))


def _target(m: Mappings | None = None, bubble: str = "") -> Target:
    return Target("r2", m or Mappings(), PATH, {"db": "db"}, bubble, "op-1")


def test_unmapped_missing_resources_are_created_by_name_in_dependency_order() -> None:
    plan, lacks = plan_infrastructure(snapshot(), BARE, _target())
    assert lacks == []
    assert [i.label for i in plan.items] == [
        "volume_type/fast",
        "flavor/small",
        "keypair/key",
        "network/app-net",
        "router/r",
        "security_group/web",
        "role_assignment/alice:member",
    ]
    router = next(i for i in plan.items if i.kind is LedgerKind.ROUTER)
    assert router.definition is not None and router.definition.interfaces == ("app-sub",)  # type: ignore[union-attr]
    placed = plan.placements["db"]
    assert (placed.flavor, placed.keypair, placed.security_groups) == ("small", "key", ("web",))
    assert [(p.network, p.subnet, p.ip) for p in placed.ports] == [
        ("app-net", "app-sub", "10.0.0.5")
    ]
    (fip,) = plan.floating_ips
    assert (fip.network, fip.fixed_ip, fip.address) == ("public", "10.0.0.5", "203.0.113.9")
    assert fip.tag == "haven:op-1:db:203.0.113.9"
    assert plan.used == ("network/public",)


def test_mappings_name_existing_resources_and_every_missing_one_is_a_lack() -> None:
    m = Mappings(
        networks={"app-net": "dr-net"},
        flavors={"small": "m1.small"},
        keypairs={"key": "dr-key"},
        security_groups={"web": "dr-web"},
    )
    have = replace(BARE, flavors=("m1.small",))
    plan, lacks = plan_infrastructure(snapshot(), have, _target(m))
    assert sorted(x.path for x in lacks) == [
        f"{PATH}.keypairs.key",
        f"{PATH}.networks.app-net",
        f"{PATH}.security_groups.web",
    ]
    assert all("r2 does not have" in x.message for x in lacks)
    assert "flavor/m1.small" in plan.used
    assert not [i for i in plan.items if i.kind is LedgerKind.FLAVOR]


def test_an_existing_network_is_used_with_its_subnet_of_the_same_cidr() -> None:
    dr = FoundNetwork("dr-net", False, (FoundSubnet("dr-sub", "10.0.0.0/24"),))
    have = replace(BARE, networks=(PUBLIC, dr))
    plan, lacks = plan_infrastructure(
        snapshot(), have, _target(Mappings(networks={"app-net": "dr-net"}))
    )
    assert lacks == []
    assert [(p.network, p.subnet, p.ip) for p in plan.placements["db"].ports] == [
        ("dr-net", "dr-sub", "10.0.0.5")
    ]
    router = next(i for i in plan.items if i.kind is LedgerKind.ROUTER)
    assert router.definition.interfaces == ("dr-sub",)  # type: ignore[union-attr]
    # a different CIDR: the fixed IP does not fit, nor is there a subnet to map to
    other = FoundNetwork("dr-net", False, (FoundSubnet("dr-sub", "10.9.0.0/24"),))
    _, lacks = plan_infrastructure(
        snapshot(),
        replace(BARE, networks=(PUBLIC, other)),
        _target(Mappings(networks={"app-net": "dr-net"})),
    )
    assert [x.path for x in lacks] == [f"{PATH}.subnets"]
    assert "map app-sub to one of its subnets (dr-sub)" in lacks[0].message


def test_fixed_ips_mapped_must_fit_and_be_free() -> None:
    m = Mappings(ips=(IpMapping("db", "app-net", "10.0.0.77"),))
    plan, lacks = plan_infrastructure(snapshot(), BARE, _target(m))
    assert lacks == [] and plan.placements["db"].ports[0].ip == "10.0.0.77"
    assert plan.floating_ips[0].fixed_ip == "10.0.0.77"  # the floating IP follows the NIC
    bad = Mappings(ips=(IpMapping("db", "app-net", "192.0.2.1"),))
    _, lacks = plan_infrastructure(snapshot(), BARE, _target(bad))
    assert [x.path for x in lacks] == [f"{PATH}.ips[0]"]
    assert "does not fit subnet app-sub (10.0.0.0/24)" in lacks[0].message
    taken = replace(
        BARE,
        networks=(PUBLIC, FoundNetwork("app-net", False, (FoundSubnet("app-sub", "10.0.0.0/24"),))),
        addresses_in_use=(AddressUse("app-net", "10.0.0.5", "x"),),
    )
    _, lacks = plan_infrastructure(snapshot(), taken, _target())
    assert [x.path for x in lacks] == [f"{PATH}.ips"]
    assert "10.0.0.5 of db is taken on app-net at r2 by x" in lacks[0].message
    req = survey_request(snapshot(), _target())
    assert ("app-net", "10.0.0.5") in req.addresses
    # held by the port this placement makes (an earlier failover's): reused, no lack
    mine = replace(taken, addresses_in_use=(AddressUse("app-net", "10.0.0.5", "db-0"),))
    assert plan_infrastructure(snapshot(), mine, _target())[1] == []


def test_operator_resources_are_never_created() -> None:
    no_public = SiteSurvey(users=("alice",), roles=("member",))
    _, lacks = plan_infrastructure(snapshot(), no_public, _target())
    assert [x.path for x in lacks] == [f"{PATH}.networks"]
    assert (
        "external network public (for router r, floating IP 203.0.113.9 of db)" in lacks[0].message
    )
    shared = replace(snapshot(), networks=(NetworkDef("app-net", shared=True),))
    _, lacks = plan_infrastructure(shared, BARE, _target())
    assert any("shared or external network" in x.message for x in lacks)
    nobody = replace(BARE, users=())
    _, lacks = plan_infrastructure(snapshot(), nobody, _target())
    assert [x.path for x in lacks] == ["sites.r2"]
    assert "user alice" in lacks[0].message and "does not create users" in lacks[0].message


def test_a_drill_places_everything_in_the_bubble_and_makes_no_network() -> None:
    bubble = FoundNetwork("bubble", False, (FoundSubnet("bubble-subnet", "10.0.0.0/24"),))
    plan, lacks = plan_infrastructure(
        snapshot(), replace(BARE, networks=(bubble,)), _target(bubble="bubble")
    )
    assert lacks == []
    assert not [i for i in plan.items if i.kind in (LedgerKind.NETWORK, LedgerKind.ROUTER)]
    assert plan.floating_ips == () and "1 floating IP(s) not attached" in plan.notes[0]
    assert [(p.network, p.ip) for p in plan.placements["db"].ports] == [("bubble", "10.0.0.5")]
    elsewhere = FoundNetwork("bubble", False, (FoundSubnet("bubble-subnet", "192.168.9.0/24"),))
    plan, _ = plan_infrastructure(
        snapshot(), replace(BARE, networks=(elsewhere,)), _target(bubble="bubble")
    )
    assert plan.placements["db"].ports[0].ip is None
    assert "10.0.0.5 does not fit the test bubble" in plan.notes[0]
    assert survey_request(snapshot(), _target(bubble="bubble")).networks == ("bubble",)


def test_security_group_rules_follow_the_group_mapping() -> None:
    snap = replace(
        snapshot(),
        security_groups=(
            *snapshot().security_groups,
            SecurityGroupDef(
                "db", "", (replace(snapshot().security_groups[0].rules[0], remote_group="web"),)
            ),
        ),
    )
    have = replace(BARE, security_groups=("dr-web",))
    plan, lacks = plan_infrastructure(
        snap, have, _target(Mappings(security_groups={"web": "dr-web"}))
    )
    assert lacks == []
    (db,) = [i for i in plan.items if i.kind is LedgerKind.SECURITY_GROUP]
    assert db.name == "db" and db.definition.rules[0].remote_group == "dr-web"  # type: ignore[union-attr]
    assert plan.placements["db"].security_groups == ("dr-web",)


def test_existing_role_assignments_are_used() -> None:
    have = replace(BARE, role_assignments=(RoleAssignment("alice", "member"),))
    plan, _ = plan_infrastructure(snapshot(), have, _target())
    assert "role_assignment/alice:member" in plan.used
    assert not [i for i in plan.items if i.kind is LedgerKind.ROLE_ASSIGNMENT]


def test_failback_inverts_name_mappings() -> None:
    m = Mappings(
        networks={"a": "b"},
        subnets={"s": "t"},
        flavors={"f": "g"},
        keypairs={"k": "l"},
        security_groups={"w": "x"},
        ips=(IpMapping("db", "a", "10.0.0.9"),),
        name_suffix="-dr",
    )
    back = inverse(m)
    assert (back.networks, back.subnets, back.flavors, back.keypairs, back.security_groups) == (
        {"b": "a"},
        {"t": "s"},
        {"g": "f"},
        {"l": "k"},
        {"x": "w"},
    )
    assert back.ips == () and back.name_suffix == ""
