"""Failover, floating IPs, a mapped project and failback of a three-server application.

One module-scoped application in RegionOne (db with a boot and a data volume, app, web
with a floating IP), one full point, one failover to RegionTwo shared by the tests (Cinder
restores are slow here). Checked: the floating IP re-created and associated after
failover; a missing external network stops the recovery in preflight before anything is
created; a drill into a mapped project re-creates the project and its role assignments and
creates no floating IP; failback brings the application home bit for bit (including
"guest" writes made at RegionTwo before and after the reverse seed), in plan order, onto
the original volumes, with the original fixed IPs and floating IP, and retires the
RegionTwo copy.

Every resource carries the prefix ``hnf`` (servers too), and the sweep here touches only
that prefix.
"""

from __future__ import annotations

import itertools
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.integration.openstack import oslab, prefix_sweep
from tests.integration.openstack.oslab import R1, R2, MiB

from haven.sites.errors import SiteConflict
from haven.sites.openstack import backups, failback, native, recovery
from haven.sites.openstack.model import KeypairRec

pytestmark = [pytest.mark.openstack, pytest.mark.slow]

PREFIX = "hnf"
GiB = 1024 * MiB


@pytest.fixture(scope="module")
def lab() -> oslab.Lab:
    return oslab.open_lab()


@pytest.fixture(scope="module")
def app(lab: oslab.Lab) -> Iterator[dict[str, Any]]:
    c, c2 = lab.conn(R1), lab.conn(R2)
    for conn in (c, c2):
        prefix_sweep.sweep(conn, PREFIX)
    p = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    ledger = recovery.Ledger()
    state: dict[str, Any] = {"prefix": p, "ledger": ledger, "r1_ledgers": [], "r2_ledgers": []}
    state["points"] = []
    try:
        _build(lab, c, p, ledger, state)
        yield state
    finally:
        _teardown(c, c2, p, ledger, state)


def _build(lab: oslab.Lab, c: Any, p: str, ledger: recovery.Ledger, state: dict) -> None:  # type: ignore[type-arg]
    # a second user with a role on the project: its assignment must follow the application
    user = c.identity.create_user(
        name=f"{p}-user", password=secrets.token_urlsafe(16), domain_id="default"
    )
    state["user_id"] = user.id
    member = c.identity.find_role("member", ignore_missing=False)
    c.identity.assign_project_role_to_user(c.current_project_id, user.id, member.id)
    net = c.network.create_network(name=f"{p}-net")
    ledger.add("network", net.id)
    sub = c.network.create_subnet(
        network_id=net.id, name=f"{p}-subnet", cidr="10.44.0.0/24", ip_version=4,
        gateway_ip="10.44.0.1",
    )  # fmt: skip
    ledger.add("subnet", sub.id)
    recovery.create_router(c, f"{p}-router", [], "public", ledger, subnet_ids=[sub.id])
    sg = c.network.create_security_group(name=f"{p}-web", description="web tier")
    ledger.add("security_group", sg.id)
    c.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", ether_type="IPv4", protocol="tcp",
        port_range_min=443, port_range_max=443, remote_ip_prefix="0.0.0.0/0",
    )  # fmt: skip
    pub = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    c.compute.create_keypair(name=f"{p}-key", public_key=pub)
    ledger.add("keypair", f"{p}-key")
    flavor = c.compute.create_flavor(name=f"{p}-small", vcpus=1, ram=128, disk=0)
    ledger.add("flavor", flavor.id)
    layout = {"db": ["boot", "data"], "app": ["boot"], "web": ["boot"]}
    # db's data volume has a type RegionTwo lacks: the recovery must create it and use it
    gold = c.block_storage.create_type(name=f"{p}-gold")
    ledger.add("volume_type", gold.id)
    vol_ids: dict[str, str] = {}
    for srv, vols in layout.items():
        for v in vols:
            kw = {"volume_type": gold.name} if (srv, v) == ("db", "data") else {}
            vol = c.block_storage.create_volume(size=1, name=f"{p}-{srv}-{v}", **kw)
            ledger.add("volume", vol.id)
            vol_ids[f"{p}-{srv}-{v}"] = vol.id
    images: dict[str, oslab.Image] = {}
    for name, vid in vol_ids.items():
        vol = c.block_storage.wait_for_status(
            c.block_storage.get_volume(vid), "available", failures=["error"], wait=300
        )
        if name.endswith("-boot"):
            c.block_storage.set_volume_bootable_status(vol, True)
        img = oslab.Image(GiB)
        for off in (0, 300 * MiB + 4096, GiB - MiB):
            data = os.urandom(MiB)
            oslab.write_volume(lab, R1, vid, off, data)
            img.write(off, data)
        images[name] = img
    servers = {}
    for srv, vols in layout.items():
        bdm = [
            {
                "uuid": vol_ids[f"{p}-{srv}-{v}"],
                "source_type": "volume",
                "destination_type": "volume",
                "boot_index": 0 if v == "boot" else -1,
                "delete_on_termination": False,
            }
            for v in vols
        ]
        kw = {"security_groups": [{"name": f"{p}-web"}]} if srv == "web" else {}
        servers[srv] = c.compute.create_server(
            name=f"{p}-{srv}", flavor_id=flavor.id, key_name=f"{p}-key",
            networks=[{"uuid": net.id}], block_device_mapping=bdm, **kw,
        )  # fmt: skip
    for srv, s in servers.items():
        servers[srv] = c.compute.wait_for_server(s, wait=300)
    public = c.network.find_network("public", ignore_missing=False)
    web_port = next(iter(c.network.ports(device_id=servers["web"].id)))
    fip = c.network.create_ip(
        floating_network_id=public.id, port_id=web_port.id, description=f"{p} fixture"
    )
    ledger.add("floating_ip", fip.id)
    state.update(
        servers=servers, vol_ids=vol_ids, images=images, net=net, fip=fip.floating_ip_address,
        stages=[[f"{p}-db"], [f"{p}-app"], [f"{p}-web"]],
    )  # fmt: skip
    point = native.protect(
        c, "lab/RegionOne", [s.id for s in servers.values()], f"p1-{p}", f"{p}-pg"
    )
    state["points"].append(point)
    state["p1"] = point


def _teardown(c: Any, c2: Any, p: str, ledger: recovery.Ledger, state: dict) -> None:  # type: ignore[type-arg]
    """Every step runs even when one fails; the failures are raised together at the end."""
    errors: list[str] = []

    def step(what: str, fn) -> None:  # type: ignore[no-untyped-def]
        try:
            fn()
        except Exception as exc:  # collected and raised below
            errors.append(f"{what}: {exc!r}")

    for led in state["r2_ledgers"]:
        step("RegionTwo ledger", lambda led=led: recovery.cleanup(c2, led))
    for led in state["r1_ledgers"]:
        step("RegionOne ledger", lambda led=led: recovery.cleanup(c, led))
    for pt in reversed(state["points"]):  # children before their parents
        for conn in (c2, c):  # imported records first, then the originals
            for vb in pt.backups.values():
                for rec in reversed(vb.chain):
                    step("backup", lambda conn=conn, rec=rec: _drop_backup(conn, rec.backup_id))
    for s in state.get("servers", {}).values():
        c.compute.delete_server(s.id, ignore_missing=True)
        prefix_sweep.gone(lambda s=s: c.compute.find_server(s.id))
    for g in c.block_storage.groups():
        if g.name == f"{p}-pg":
            step("group", lambda g=g: c.block_storage.delete_group(g, delete_volumes=True))
            prefix_sweep.gone(lambda g=g: c.block_storage.find_group(g.id))
    step("RegionOne fixture ledger", lambda: recovery.cleanup(c, ledger))
    if state.get("user_id"):
        c.identity.delete_user(state["user_id"], ignore_missing=True)
    for conn in (c, c2):
        step("sweep", lambda conn=conn: prefix_sweep.sweep(conn, p))
    if errors:
        raise AssertionError("teardown: " + "; ".join(errors))


def _drop_backup(conn: Any, backup_id: str) -> None:
    b = conn.block_storage.find_backup(backup_id)
    if b is not None:
        conn.block_storage.delete_backup(b)
        prefix_sweep.gone(lambda: conn.block_storage.find_backup(backup_id))


@pytest.fixture(scope="module")
def failover(lab: oslab.Lab, app: dict[str, Any]) -> native.RecoveryResult:
    p = app["prefix"]
    mapping = recovery.Mapping(networks={f"{p}-net": f"{p}-net-dr"})
    res = native.recover(lab.conn(R2), app["p1"], app["stages"], mapping)
    app["r2_ledgers"].append(res.ledger)
    print(f"\nfailover RTO {res.rto_s:.1f}s ({res.timings})")
    return res


def test_failover_recreates_floating_ip(lab: oslab.Lab, app: dict, failover) -> None:  # type: ignore[no-untyped-def,type-arg]
    c2 = lab.conn(R2)
    p = app["prefix"]
    [f] = failover.floating_ips
    assert f.source_address == app["fip"] and f.server == f"{p}-web" and f.network == "public"
    # RegionTwo's pool is 203.0.113.128/25: the RegionOne address cannot be kept
    assert not f.kept and f.address != app["fip"]
    fip = next(iter(c2.network.ips(floating_ip_address=f.address)))
    web = next(b for b in failover.servers if b.source_name == f"{p}-web")
    port = c2.network.get_port(fip.port_id)
    assert port.device_id == web.server_id
    assert fip.fixed_ip_address == web.fixed_ips[0]
    assert ("floating_ip", fip.id) in failover.ledger.items
    # the volume type RegionTwo lacked was created (preflight said so) and used
    assert recovery.Missing("volume_type", f"{p}-gold", True) in failover.missing
    src_types = {v.name: v.volume_type for s in app["p1"].inventory.servers for v in s.volumes}
    assert src_types[f"{p}-db-data"] == f"{p}-gold"
    for (_srv, vname), vid in failover.volumes.items():
        assert c2.block_storage.get_volume(vid).volume_type == src_types[vname], vname
    # the data came across bit for bit
    for (_srv, vname), vid in failover.volumes.items():
        assert oslab.volume_digest(lab, R2, vid) == app["images"][vname].digest(), vname


def test_preflight_stops_before_creating_anything(lab: oslab.Lab, app: dict) -> None:  # type: ignore[type-arg]
    c2 = lab.conn(R2)
    p = app["prefix"]
    mapping = recovery.Mapping(networks={"public": f"{p}-no-such-ext"})
    missing = native.preflight(c2, app["p1"].inventory, mapping)
    assert recovery.Missing("external_network", f"{p}-no-such-ext", False) in missing
    before = prefix_sweep.counts(c2, p)
    with pytest.raises(SiteConflict, match=f"external_network {p}-no-such-ext"):
        native.recover(c2, app["p1"], app["stages"], mapping)
    assert prefix_sweep.counts(c2, p) == before


def test_drill_into_mapped_project(lab: oslab.Lab, app: dict, failover) -> None:  # type: ignore[no-untyped-def,type-arg]
    c2 = lab.conn(R2)
    p = app["prefix"]
    proj = f"{p}-proj"
    before = prefix_sweep.counts(c2, p)
    mapping = recovery.Mapping(project=proj)
    res = native.recover(c2, app["p1"], app["stages"], mapping, drill=f"{p}-drill")
    try:
        # preflight listed identity first: the project, then the assignments to re-create
        assert res.missing[0] == recovery.Missing("project", proj, True)
        assigned = {m.name for m in res.missing if m.kind == "role_assignment"}
        assert assigned == {"admin:admin", f"{p}-user:member"}
        project = c2.identity.find_project(proj, ignore_missing=False)
        assert res.project_id == project.id
        got = {
            (a.user["name"], a.role["name"])
            for a in c2.identity.role_assignments(scope_project_id=project.id, include_names=True)
        }
        assert {("admin", "admin"), (f"{p}-user", "member")} <= got
        for b in res.servers:
            s = c2.compute.get_server(b.server_id)
            assert s.status == "ACTIVE" and s.project_id == project.id
        for vid in res.volumes.values():
            assert c2.block_storage.get_volume(vid).project_id == project.id
        # a drill creates no floating IP and says so
        assert res.floating_ips == [] and any("floating IP" in n for n in res.notes)
    finally:
        recovery.cleanup(c2, res.ledger)
    assert c2.identity.find_project(proj) is None
    assert prefix_sweep.counts(c2, p) == before


def test_failed_drill_leaves_nothing(lab: oslab.Lab, app: dict, failover) -> None:  # type: ignore[no-untyped-def,type-arg]
    """A drill that fails after it created a project, role assignments and its bubble
    removes all of it before the error propagates."""
    c2 = lab.conn(R2)
    p = app["prefix"]
    bad_key = KeypairRec(f"{p}-badkey", "not a public key")
    point = replace(app["p1"], inventory=replace(app["p1"].inventory, keypairs=(bad_key,)))
    before = prefix_sweep.counts(c2, p)
    mapping = recovery.Mapping(project=f"{p}-proj2")
    with pytest.raises(Exception, match=r"(?i)key"):
        native.recover(c2, point, app["stages"], mapping, drill=f"{p}-bad")
    assert c2.identity.find_project(f"{p}-proj2") is None
    assert not [n for n in c2.network.networks() if n.name.startswith(f"{p}-bad")]
    assert prefix_sweep.counts(c2, p) == before


def test_failback_round_trip(lab: oslab.Lab, app: dict, failover) -> None:  # type: ignore[no-untyped-def,type-arg]
    c, c2 = lab.conn(R1), lab.conn(R2)
    p = app["prefix"]
    images: dict[str, oslab.Image] = app["images"]
    dr_ids = [b.server_id for b in failover.servers]
    dr_vols = dict(failover.volumes)
    # the application runs at RegionTwo and writes ("guest" bytes)
    for (_srv, vname), vid in dr_vols.items():
        data = os.urandom(MiB)
        oslab.write_volume(lab, R2, vid, 100 * MiB, data)
        images[vname].write(100 * MiB, data)
    b0 = oslab.dir_bytes(lab.backup_store)
    seed = failback.seed(c2, dr_ids, f"s1-{p}", "lab/RegionTwo")
    app["points"].append(seed)
    b1 = oslab.dir_bytes(lab.backup_store)
    # ... and keeps writing after the seed: this must reach home through the final delta
    for (_srv, vname), vid in dr_vols.items():
        data = os.urandom(2 * MiB)
        oslab.write_volume(lab, R2, vid, 500 * MiB + 512, data)
        images[vname].write(500 * MiB + 512, data)
    original = app["p1"].inventory
    try:
        res = failback.failback(
            c2, c, dr_ids, app["stages"], original, f"fb-{p}",
            mapping=failover.mapping.inverse(), seed_point=seed, delete_dr_volumes=True,
            site="lab/RegionTwo",
        )  # fmt: skip
    except Exception as exc:
        if getattr(exc, "ledger", None) is not None:
            app["r1_ledgers"].append(exc.ledger)
        raise
    app["points"].append(res.final)
    app["r1_ledgers"].append(res.home.ledger)
    app["failback"] = res
    b2 = oslab.dir_bytes(lab.backup_store)
    print(
        f"\nfailback {res.duration_s:.1f}s, downtime {res.downtime_s:.1f}s ({res.timings}); "
        f"backup store bytes: seed {b1 - b0}, final delta {b2 - b1}; "
        f"seed protect {seed.duration_s:.1f}s, final protect {res.final.duration_s:.1f}s"
    )
    # full seed, incremental final on top of it (same DR volumes)
    for vid, vb in res.final.backups.items():
        assert [r.incremental for r in vb.chain] == [False, True], vid
        assert vb.chain[0].backup_id == seed.backups[vid].backup_id
    assert b2 - b1 < b1 - b0
    # home: onto the original volumes, original names, plan order, original fixed IPs
    orig_vols = {(s.name, v.name): v.source_id for s in original.servers for v in s.volumes}
    assert res.restored_into == orig_vols
    assert sorted(res.stale_deleted) == sorted(s.id for s in app["servers"].values())
    by_name = {b.source_name: b for b in res.home.servers}
    assert sorted(by_name) == sorted(s.name for s in original.servers)
    for a, b in itertools.pairwise(app["stages"]):
        assert max(by_name[n].active_at for n in a) <= min(by_name[n].requested_at for n in b)
    for b in res.home.servers:
        s = c.compute.get_server(b.server_id)
        assert s.status == "ACTIVE" and s.name == b.source_name
        assert list(s.addresses) == [f"{p}-net"]
        assert b.fixed_ips == original.server(b.source_name).nics[0].fixed_ips
    # data: bit for bit what the application wrote at RegionTwo, on the original volumes
    for (_srv, vname), vid in res.home.volumes.items():
        assert vid == orig_vols[(_srv, vname)]
        assert oslab.volume_digest(lab, R1, vid) == images[vname].digest(), vname
    # the floating IP is home at its original address, on the new web server
    [f] = res.home.floating_ips
    assert f.address == app["fip"] and f.kept
    fip = next(iter(c.network.ips(floating_ip_address=app["fip"])))
    assert c.network.get_port(fip.port_id).device_id == by_name[f"{p}-web"].server_id
    # RegionTwo's copy is retired: servers, their ports and floating IP, and (asked) volumes
    for sid in dr_ids:
        assert c2.compute.find_server(sid) is None
    for vid in dr_vols.values():
        assert c2.block_storage.find_volume(vid) is None
    assert sorted(res.dr_volumes_deleted) == sorted(dr_vols.values())
    assert not list(c2.network.ips(floating_ip_address=failover.floating_ips[0].address))


def test_home_protection_continues_incrementally(lab: oslab.Lab, app: dict) -> None:  # type: ignore[type-arg]
    """Restored onto the original volumes, home keeps their forward chains: the next
    point there is incremental on the pre-failover point, and restores bit for bit."""
    if "failback" not in app:
        pytest.skip("needs test_failback_round_trip")
    c = lab.conn(R1)
    p = app["prefix"]
    res: failback.FailbackResult = app["failback"]
    ids = [b.server_id for b in res.home.servers]
    b0 = oslab.dir_bytes(lab.backup_store)
    p2 = native.protect(c, "lab/RegionOne", ids, f"p2-{p}", f"{p}-pg", previous=app["p1"])
    app["points"].append(p2)
    moved = oslab.dir_bytes(lab.backup_store) - b0
    print(f"\nhome point after failback: {moved} bytes, {p2.duration_s:.1f}s")
    for vid, vb in p2.backups.items():
        assert [r.incremental for r in vb.chain] == [False, True], vid
        assert vb.chain[0].backup_id == app["p1"].backups[vid].backup_id
    db_data = next(v for v in p2.inventory.server(f"{p}-db").volumes if v.name.endswith("-data"))
    vid = backups.restore(c, p2.backups[db_data.source_id].backup_id, f"{p}-check", False)
    try:
        assert oslab.volume_digest(lab, R1, vid) == app["images"][db_data.name].digest()
    finally:
        c.block_storage.delete_volume(vid, ignore_missing=True)
        prefix_sweep.gone(lambda: c.block_storage.find_volume(vid))
