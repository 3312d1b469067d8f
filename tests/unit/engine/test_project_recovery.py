"""Project recovery through the engine on fake sites with projects (``make_lab(project=True)``).

Site a's three servers live on network shop-net behind router shop-router, with security
groups, a keypair, a flavor, a volume type, fixed IPs, web's floating IP and a role
assignment; site b has only the external network, the user and role, and flavor m1.small
(plan shop maps m1.shop to it). Checked: protect captures the project with the point; a
failover re-creates each resource by name in its own step (the mapped flavor used, not
made), places every server as it was, records all of it in the ledger and lists it in its
result; a drill creates no network, router or floating IP and its cleanup leaves site b as
it was; a plan mapping to things site b lacks fails in preflight, listing them all, before
anything exists.
"""

from __future__ import annotations

import copy

from haven.domain.errors import ExitCode
from haven.domain.groups import GroupState
from haven.domain.operations import Operation, OperationKind, OperationState
from haven.domain.project import LedgerKind, NetworkDef, PortDef, ServerPlacement, SubnetDef
from haven.engine import service, services
from haven.engine.workflows.cleanup import cleanup_workflow
from haven.engine.workflows.failback import failback_workflow
from haven.engine.workflows.failover import failover_workflow
from haven.engine.workflows.protect import protect_workflow
from haven.engine.workflows.test_failover import drill_workflow
from haven.sites.fake.filebacked import FileFakeDriver
from tests.unit.engine.conftest import LabFactory
from tests.unit.engine.lab import FIXED_IPS, FLOATING_IP, SERVERS, disk_bytes


def _ok(op: Operation) -> Operation:
    assert op.state is OperationState.SUCCEEDED, (op.error, [(s.name, s.detail) for s in op.steps])
    return op


def _protect() -> Operation:
    return _ok(service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop"))


def _state(site: FileFakeDriver) -> object:
    """Everything of site b's project and servers, for "as it was" comparisons."""
    site = FileFakeDriver(site.name, site._dir)  # reload from disk
    return (copy.deepcopy(site.project), sorted(site.networks), sorted(site.servers),
            sorted(site.volumes))  # fmt: skip


def test_protect_captures_the_project_with_the_point(lab_with: LabFactory) -> None:
    lab_with(project=True)
    op = _protect()
    # ordered freeze, reverse thaw: in the result and in the snapshot step's detail
    order = "freeze db, freeze app, freeze web, thaw web, thaw app, thaw db"
    assert op.result["consistency"] == "application" and op.result["quiesce"] == order
    assert order in next(s for s in op.steps if s.name == "protect.snapshot").detail
    step = next(s for s in op.steps if s.name == "protect.project")
    assert "2 networks, 1 routers, 2 security groups, 1 keypairs, 1 flavors" in step.detail
    snap = services.catalog().point_project(op.result["point"])
    assert snap is not None
    assert {p.server for p in snap.servers} == set(SERVERS)
    assert snap.placement("web") is not None
    assert snap.placement("web").ports[0].fixed_ips == (FIXED_IPS["web"],)  # type: ignore[union-attr]
    assert [(f.address, f.server, f.network) for f in snap.floating_ips] == [
        (FLOATING_IP, "web", "public")
    ]
    assert [r.name for r in snap.routers] == ["shop-router"]


def test_failover_recreates_the_project_and_places_servers(lab_with: LabFactory) -> None:
    lab = lab_with(project=True)
    _protect()
    op = _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop"))
    steps = [s.name for s in op.steps]
    infra = [s for s in steps if s.startswith("recover.infra:")]
    assert steps.index("recover.preflight") < min(steps.index(s) for s in infra)
    assert max(steps.index(s) for s in infra) < steps.index("recover.restore:db/vda")
    assert sorted(infra) == sorted(
        [
            "recover.infra:volume_type/fast",
            "recover.infra:keypair/shop-key",
            "recover.infra:network/shop-net",
            "recover.infra:router/shop-router",
            "recover.infra:security_group/shop-web",
            "recover.infra:security_group/shop-db",
            "recover.infra:role_assignment/alice:member",
        ]
    )  # fmt: skip  (the flavor is mapped to site b's m1.small: used, not made)
    b = lab.site("site-b")
    pr = b.project
    assert "m1.shop" not in pr.flavors
    net = pr.networks["shop-net"][1]
    assert [(s.name, s.cidr, s.gateway_ip) for s in net.subnets] == [
        ("shop-sub", "10.20.0.0/24", "10.20.0.1")
    ]
    assert pr.routers["shop-router"][1].gateway == "public"
    assert pr.routers["shop-router"][1].interfaces == ("shop-sub",)
    db_rules = pr.security_groups["shop-db"][1].rules
    assert [(r.port_min, r.remote_group) for r in db_rules] == [(5432, "shop-web")]
    for name in SERVERS:
        sid = b.get_server(name).id
        placed = pr.placements[sid]
        assert placed.flavor == "m1.small" and placed.keypair == "shop-key"
        assert placed.security_groups == (("shop-web",) if name == "web" else ("shop-db",))
        ports = [p for p in pr.ports.values() if p.server_id == sid]
        assert [(p.network, p.ip) for p in ports] == [("shop-net", FIXED_IPS[name])]
        vol = b.get_server(name).spec.disk("vda").source
        assert vol is not None and b.volume_type(vol) == "fast"
    web = b.get_server("web").id
    assert b.server_addresses(web) == (FLOATING_IP, FIXED_IPS["web"])
    assert disk_bytes(b, "db").startswith(b"db initial data")
    created = services.catalog().created_resources(op.id)
    kinds = sorted(r.kind.value for r in created)
    assert kinds == sorted(
        ["volume_type", "keypair", "network", "subnet", "router", "security_group",
         "security_group", "role_assignment", "floating_ip"]
        + ["volume", "server", "port"] * 3
    )  # fmt: skip
    for part in ("network/shop-net", "router/shop-router", "keypair/shop-key",
                 f"floating_ip/{FLOATING_IP}", "port/web-0", "server/web"):  # fmt: skip
        assert part in op.result["created"]
    assert f"{FLOATING_IP} -> web (kept)" in op.result["floating_ips"]


def test_drill_makes_no_network_router_or_floating_ip_and_cleanup_undoes_it(
    lab_with: LabFactory,
) -> None:
    lab = lab_with(project=True)
    _protect()
    before = _state(lab.site("site-b"))
    drill = _ok(service.run(OperationKind.TEST_FAILOVER, "shop", drill_workflow, "shop"))
    b = lab.site("site-b")
    assert "shop-net" not in b.networks and not b.project.routers
    # no CIDR in the plan: the bubble takes the application's subnet
    assert [x.cidr for x in b.project.networks["shop-drill"][1].subnets] == ["10.20.0.0/24"]
    assert not b.project.floating_ips
    assert "floating IP(s) not attached" in drill.result["notes"]
    for name in SERVERS:
        sid = b.get_server(f"{name}-drill").id
        ports = [p for p in b.project.ports.values() if p.server_id == sid]
        # the bubble has the application's CIDR: the fixed IPs are kept there
        assert [(p.network, p.ip) for p in ports] == [("shop-drill", FIXED_IPS[name])]
    assert {"shop-web", "shop-db"} <= set(b.project.security_groups)
    _ok(service.run(OperationKind.CLEANUP, "shop", cleanup_workflow, drill.id))
    assert _state(lab.site("site-b")) == before
    assert all(r.removed for r in services.catalog().created_resources(drill.id))


def test_preflight_lists_every_missing_mapping_and_creates_nothing(lab_with: LabFactory) -> None:
    lab = lab_with(project=True)
    _protect()
    before = _state(lab.site("site-b"))
    op = service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop-bad")
    assert op.state is OperationState.FAILED
    assert op.exit_code is ExitCode.BAD_INPUT
    assert "nothing was created" in op.error
    for path in ("plans.shop-bad.mappings.flavors.m1.shop", "plans.shop-bad.mappings.networks."
                 "shop-net", "plans.shop-bad.mappings.keypairs.shop-key"):  # fmt: skip
        assert path in op.error, op.error
    assert "m1.nope" in op.error and "no-net" in op.error and "no-key" in op.error
    assert [
        s.name for s in op.steps if s.name.startswith(("recover.infra", "recover.restore"))
    ] == []
    assert _state(lab.site("site-b")) == before
    assert services.catalog().created_resources(op.id) == []
    assert services.catalog().group_state("shop") is GroupState.PROTECTED


def test_fixed_ip_held_at_the_recovery_site_is_a_lack(lab_with: LabFactory) -> None:
    lab = lab_with(project=True)
    _protect()
    b = lab.site("site-b")
    b.add_network(NetworkDef("shop-net", (SubnetDef("other", "10.20.0.0/24"),)))
    squatter = b.add_server(lab_server("squatter"))
    b.place(squatter, ServerPlacement("squatter", "m1.small", ports=(
        PortDef("shop-net", (FIXED_IPS["db"],)),)))  # fmt: skip
    op = service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop")
    assert op.state is OperationState.FAILED and op.exit_code is ExitCode.BAD_INPUT
    assert "plans.shop.mappings.ips" in op.error
    assert f"fixed IP {FIXED_IPS['db']} of db is taken on shop-net" in op.error
    # the network exists: its subnet of the same CIDR is used, nothing else is missing
    assert op.error.count("plans.shop.") == 1, op.error
    assert [r for r in services.catalog().created_resources(op.id)] == []


def test_failback_onto_the_home_servers_keeps_their_ports(lab_with: LabFactory) -> None:
    lab = lab_with(project=True)
    _protect()
    _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop"))
    lab.site("site-b").write_disk("db", "vda", 0, b"written at site b")
    before = _state(lab.site("site-a"))
    fb = _ok(service.run(OperationKind.FAILBACK, "shop", failback_workflow, "shop"))
    a = lab.site("site-a")
    assert disk_bytes(a, "db").startswith(b"written at site b")
    assert int(fb.result["reused_servers"]) == 3 and fb.result["created"] == ""
    assert _state(a) == before  # the home project as it was: nothing created, no port moved


def lab_server(name: str):  # type: ignore[no-untyped-def]
    from tests.unit.engine.lab import server_spec

    return server_spec(name)


def test_ledger_kinds_are_removed_dependents_first() -> None:
    order = list(LedgerKind)
    assert order.index(LedgerKind.SERVER) < order.index(LedgerKind.PORT)
    assert order.index(LedgerKind.PORT) < order.index(LedgerKind.NETWORK)
    assert order.index(LedgerKind.ROUTER) < order.index(LedgerKind.SUBNET)
    assert order.index(LedgerKind.SUBNET) < order.index(LedgerKind.NETWORK)
    assert order.index(LedgerKind.FLOATING_IP) < order.index(LedgerKind.PORT)
