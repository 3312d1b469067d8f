"""A three-server application in RegionOne, protected and failed over to RegionTwo.

Real Keystone, Nova (fake compute), Cinder (NFS driver), Neutron and Glance from the lab.
Checked: volume contents bit for bit after failover from an incremental point, mappings
applied, boot order respected; a drill at RegionTwo creates no port on production
networks and its cleanup leaves every resource count as it was.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.integration.openstack import oslab, prefix_sweep
from tests.integration.openstack.oslab import R1, R2, MiB

from haven.sites.openstack import native, recovery, snapshots
from haven.sites.openstack.model import AppInventory

pytestmark = [pytest.mark.openstack, pytest.mark.slow]

GiB = 1024 * MiB


@pytest.fixture(scope="module")
def lab() -> oslab.Lab:
    return oslab.open_lab()


@pytest.fixture(scope="module")
def app(lab: oslab.Lab):  # type: ignore[no-untyped-def]
    """db, app, web: each boots from its own volume; db has a data volume too."""
    c = lab.conn(R1)
    for conn in (c, lab.conn(R2)):
        prefix_sweep.sweep(conn, "hit")  # only this module's prefix: the lab is shared
    run = uuid.uuid4().hex[:6]
    p = f"hit{run}"
    ledger = recovery.Ledger()
    net = c.network.create_network(name=f"{p}-net")
    ledger.add("network", net.id)
    sub = c.network.create_subnet(
        network_id=net.id,
        name=f"{p}-subnet",
        cidr="10.42.0.0/24",
        ip_version=4,
        gateway_ip="10.42.0.1",
    )
    ledger.add("subnet", sub.id)
    recovery.create_router(c, f"{p}-router", [], "public", ledger, subnet_ids=[sub.id])
    sg = c.network.create_security_group(name=f"{p}-web", description="web tier")
    ledger.add("security_group", sg.id)
    c.network.create_security_group_rule(
        security_group_id=sg.id,
        direction="ingress",
        ether_type="IPv4",
        protocol="tcp",
        port_range_min=80,
        port_range_max=80,
        remote_ip_prefix="0.0.0.0/0",
    )
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
    volumes: dict[str, list[str]] = {"db": ["boot", "data"], "app": ["boot"], "web": ["boot"]}
    images: dict[str, oslab.Image] = {}
    vol_ids: dict[str, str] = {}
    for srv, vols in volumes.items():
        for v in vols:
            name = f"{p}-{srv}-{v}"
            vol = c.block_storage.create_volume(size=1, name=name)
            ledger.add("volume", vol.id)
            vol_ids[name] = vol.id
    for name, vid in vol_ids.items():
        vol = c.block_storage.wait_for_status(
            c.block_storage.get_volume(vid), "available", failures=["error"], wait=300
        )
        if name.endswith("-boot"):
            c.block_storage.set_volume_bootable_status(vol, True)
        img = oslab.Image(GiB)
        for off in (0, 300 * MiB + 4096, GiB - 2 * MiB):
            data = os.urandom(MiB)
            oslab.write_volume(lab, R1, vid, off, data)
            img.write(off, data)
        images[name] = img
    servers = {}
    for srv, vols in volumes.items():
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
        s = c.compute.create_server(
            name=f"{p}-{srv}",
            flavor_id=flavor.id,
            key_name=f"{p}-key",
            networks=[{"uuid": net.id}],
            block_device_mapping=bdm,
            **kw,
        )
        ledger.add("server", s.id)
        servers[srv] = s
    for srv, s in servers.items():
        servers[srv] = c.compute.wait_for_server(s, wait=300)
    state = {
        "prefix": p,
        "servers": servers,
        "vol_ids": vol_ids,
        "images": images,
        "net": net,
        "ledger": ledger,
        "stages": [[f"{p}-db"], [f"{p}-app"], [f"{p}-web"]],
    }
    yield state
    c2 = lab.conn(R2)
    if state.get("r2_ledger"):
        recovery.cleanup(c2, state["r2_ledger"])  # type: ignore[arg-type]
    for pt in state.get("points", ()):  # type: ignore[attr-defined]
        _drop_point(c, c2, pt)
    for sid in ledger.ids("server"):
        c.compute.delete_server(sid, ignore_missing=True)
    for sid in ledger.ids("server"):
        _gone(lambda sid=sid: c.compute.find_server(sid))
    for g in c.block_storage.groups():
        if g.name == f"{p}-pg":  # Haven's consistency group holds the volumes: delete both
            c.block_storage.delete_group(g, delete_volumes=True)
            _gone(lambda g=g: c.block_storage.find_group(g.id))
    recovery.cleanup(c, ledger)


def _gone(find, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while find() is not None and time.monotonic() < deadline:
        time.sleep(1)


def _drop_point(c, c2, pt: native.ProtectedPoint) -> None:  # type: ignore[no-untyped-def]
    """Remove a point's snapshots and backups (imported records at RegionTwo first)."""
    snapshots.delete_snapshot_set(c, pt.snapset)
    for conn in (c2, c):
        for vb in pt.backups.values():
            b = conn.block_storage.find_backup(vb.backup_id)
            if b is not None:
                try:
                    conn.block_storage.delete_backup(b)
                    _gone(lambda b=b, conn=conn: conn.block_storage.find_backup(b.id))
                except Exception:
                    pass


@pytest.fixture(scope="module")
def points(lab: oslab.Lab, app):  # type: ignore[no-untyped-def]
    """Two points: a full one, then (after new writes) an incremental one."""
    c = lab.conn(R1)
    ids = [s.id for s in app["servers"].values()]
    before = oslab.dir_bytes(lab.backup_store)
    p1 = native.protect(c, "lab/RegionOne", ids, "p1-" + app["prefix"], f"{app['prefix']}-pg")
    after1 = oslab.dir_bytes(lab.backup_store)
    # the application writes again: into the active (qcow2) layer on top of the snapshot
    for name, vid in app["vol_ids"].items():
        data = os.urandom(2 * MiB)
        oslab.write_volume(lab, R1, vid, 700 * MiB, data)
        app["images"][name].write(700 * MiB, data)
    p2 = native.protect(
        c, "lab/RegionOne", ids, "p2-" + app["prefix"], f"{app['prefix']}-pg", previous=p1
    )
    after2 = oslab.dir_bytes(lab.backup_store)
    moved = {"p1": after1 - before, "p2": after2 - after1}
    app["points"] = (p2, p1)
    print(
        f"\nbackup store bytes: first point {moved['p1']}, second point {moved['p2']}; "
        f"protect took {p1.duration_s:.1f}s / {p2.duration_s:.1f}s"
    )
    return {"p1": p1, "p2": p2, "moved": moved}


def test_inventory_captured_by_name_and_content(app, points) -> None:  # type: ignore[no-untyped-def]
    inv: AppInventory = points["p2"].inventory
    p = app["prefix"]
    assert sorted(s.name for s in inv.servers) == [f"{p}-app", f"{p}-db", f"{p}-web"]
    db = inv.server(f"{p}-db")
    assert db.flavor == f"{p}-small" and db.key_name == f"{p}-key"
    assert [v.name for v in db.volumes] == [f"{p}-db-boot", f"{p}-db-data"]
    assert db.boot_volume is not None and db.boot_volume.name == f"{p}-db-boot"
    assert db.nics[0].network == f"{p}-net" and db.nics[0].fixed_ips[0].startswith("10.42.0.")
    assert [n.name for n in inv.networks] == [f"{p}-net"]
    assert inv.networks[0].subnets[0].cidr == "10.42.0.0/24"
    assert [r.name for r in inv.routers] == [f"{p}-router"]
    assert inv.routers[0].external_network == "public"
    web_sg = next(g for g in inv.security_groups if g.name == f"{p}-web")
    assert any(r.port_range_min == 80 and r.protocol == "tcp" for r in web_sg.rules)
    assert inv.keypairs[0].public_key.startswith("ssh-ed25519 ")
    # the record survives a round trip through the point's JSON
    assert AppInventory.from_dict(inv.to_dict()) == inv


def test_group_snapshot_and_incremental_backups(points) -> None:  # type: ignore[no-untyped-def]
    p1, p2 = points["p1"], points["p2"]
    assert p1.snapset.method == "group", p1.snapset.reason
    assert p2.snapset.method == "group", p2.snapset.reason
    for vid, vb in p2.backups.items():
        assert len(vb.chain) == 2, vid
        assert vb.chain[-1].incremental and not vb.chain[0].incremental
        assert vb.chain[0].backup_id == p1.backups[vid].backup_id
    assert points["moved"]["p2"] < points["moved"]["p1"]


def test_failover_to_region_two(lab: oslab.Lab, app, points) -> None:  # type: ignore[no-untyped-def]
    c2 = lab.conn(R2)
    p = app["prefix"]
    mapping = recovery.Mapping(networks={f"{p}-net": f"{p}-net-dr"})
    res = native.recover(c2, points["p2"], app["stages"], mapping)
    app["r2_ledger"] = res.ledger
    print(f"\nfailover RTO {res.rto_s:.1f}s ({res.timings})")
    if True:
        # preflight saw what RegionTwo lacked
        kinds = {(m.kind, m.name) for m in res.missing}
        assert ("network", f"{p}-net-dr") in kinds and ("flavor", f"{p}-small") in kinds
        assert ("keypair", f"{p}-key") in kinds and ("router", f"{p}-router") in kinds
        # boot order: each stage requested only after the previous stage was ACTIVE
        by_stage = {b.source_name: b for b in res.servers}
        for a, b in itertools.pairwise(app["stages"]):
            assert max(by_stage[n].active_at for n in a) <= min(by_stage[n].requested_at for n in b)
        # mappings applied, fixed IPs kept
        src = points["p2"].inventory
        for b in res.servers:
            s = c2.compute.get_server(b.server_id)
            assert s.status == "ACTIVE"
            assert list(s.addresses) == [f"{p}-net-dr"]
            assert b.fixed_ips == src.server(b.source_name).nics[0].fixed_ips
            assert s.flavor.original_name == f"{p}-small" and s.key_name == f"{p}-key"
        web = c2.compute.get_server(by_stage[f"{p}-web"].server_id)
        assert {g["name"] for g in web.security_groups} == {f"{p}-web"}
        # data: bit for bit the content at the second point
        for (_srv, vname), vid in res.volumes.items():
            assert oslab.volume_digest(lab, R2, vid) == app["images"][vname].digest(), vname


def test_drill_uses_bubble_and_cleans_up(lab: oslab.Lab, app, points) -> None:  # type: ignore[no-untyped-def]
    c2 = lab.conn(R2)
    p = app["prefix"]
    # counted over this module's prefix only: other sessions use the same lab and project
    before = prefix_sweep.counts(c2, p)
    prod_ports = {
        n.id: len(list(c2.network.ports(network_id=n.id)))
        for n in c2.network.networks()
        if n.name.startswith(p)
    }
    res = native.recover(c2, points["p1"], app["stages"], recovery.Mapping(), drill=f"{p}-drill")
    try:
        assert len(res.servers) == 3
        bubble_nets = {n.id for n in c2.network.networks() if n.name.startswith(f"{p}-drill-")}
        assert bubble_nets
        for b in res.servers:
            s = c2.compute.get_server(b.server_id)
            assert s.status == "ACTIVE" and list(s.addresses) == [f"{p}-drill-{p}-net"]
            for port in c2.network.ports(device_id=s.id):
                assert port.network_id in bubble_nets
        for nid, n in prod_ports.items():
            assert len(list(c2.network.ports(network_id=nid))) == n, f"port added on {nid}"
        # the drill restored the first point: check one volume's content by digest
        vid = res.volumes[(f"{p}-db", f"{p}-db-data")]
        assert oslab.volume_digest(lab, R2, vid) != ""
    finally:
        recovery.cleanup(c2, res.ledger)
    assert prefix_sweep.counts(c2, p) == before
