"""The DR engine on OpenStack sites, through Haven's own repository in the recovery
region's Swift (data path 2: volume data moves through image upload/download).

A one-server application (boots from a 1 GiB volume) in RegionOne is protected twice by
the engine's protect workflow, drilled into a test bubble at RegionTwo and cleaned up,
then failed over to RegionTwo. Checked: the second point sends only what changed, the
drill leaves RegionTwo's resource counts as they were, the failed-over volume holds the
second point's bytes exactly, and the server runs at RegionTwo on the mapped network.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haven.catalog.store import Catalog
from haven.datamover.backends import BackendError, ObjectNotFound
from haven.domain.operations import OperationKind, OperationState
from haven.engine import resolve, service, services
from haven.engine.apply import apply_spec
from haven.engine.workflows.cleanup import cleanup_workflow
from haven.engine.workflows.failback import failback_workflow
from haven.engine.workflows.failover import failover_workflow
from haven.engine.workflows.protect import protect_workflow
from haven.engine.workflows.test_failover import drill_workflow
from haven.specs import load_spec
from tests.contract.swift_lab import drop_container
from tests.integration.openstack import oslab
from tests.integration.openstack.oslab import R1, R2, MiB

pytestmark = [pytest.mark.openstack, pytest.mark.slow]

PREFIX = "hen"
GiB = 1024 * MiB

SPEC = """\
apiVersion: haven/v1
sites:
  - {{name: r1, driver: openstack, cloud: haven-lab, region: RegionOne}}
  - {{name: r2, driver: openstack, cloud: haven-lab, region: RegionTwo}}
repositories:
  - name: offsite
    url: "swift://{container}/repo"
    site: r2
    password: {{env: HEN_REPO_PASSWORD}}
policies:
  - {{name: p, rpo: 1h, retention: {{keep_last: 5}}, consistency: application-or-crash}}
groups:
  - {{name: hen, source: r1, target: r2, policy: p, repository: offsite,
      members: [{{server: {server}}}]}}
plans:
  - name: hen
    group: hen
    stages:
      - servers: [{server}]
    mappings:
      networks: {{{net}: {net}-dr}}
    test_bubble: {{network: {net}-bubble}}
"""


# data path 1: the same application kept by Cinder backup (no Haven repository); its
# network is mapped to <net>-dr at RegionTwo, as in SPEC
NATIVE_SPEC = """\
apiVersion: haven/v1
sites:
  - {{name: r1, driver: openstack, cloud: haven-lab, region: RegionOne}}
  - {{name: r2, driver: openstack, cloud: haven-lab, region: RegionTwo}}
policies:
  - {{name: p, rpo: 1h, retention: {{keep_last: 5}}, data_path: cinder-backup}}
groups:
  - {{name: hencb, source: r1, target: r2, policy: p, members: [{{server: {server}}}]}}
plans:
  - name: hencb
    group: hencb
    stages:
      - servers: [{server}]
    mappings:
      networks: {{{net}: {net}-dr}}
"""


def _swift_env(lab: oslab.Lab) -> dict[str, str]:
    """The Swift backend's Keystone settings (as the engine reads them), from the lab."""
    auth = lab.auth()
    return {
        "HAVEN_SWIFT_AUTH_VERSION": "3",
        "HAVEN_SWIFT_AUTH_URL": auth["auth_url"],
        "HAVEN_SWIFT_USER": auth["username"],
        "HAVEN_SWIFT_KEY": auth["password"],
        "HAVEN_SWIFT_PROJECT": auth["project_name"],
        "HAVEN_SWIFT_USER_DOMAIN": auth.get("user_domain_name", "Default"),
        "HAVEN_SWIFT_PROJECT_DOMAIN": auth.get("project_domain_name", "Default"),
        "HAVEN_SWIFT_REGION": R2,
    }


class App:
    def __init__(self, lab: oslab.Lab, run: str) -> None:
        self.lab = lab
        self.run = run
        self.server = f"{PREFIX}{run}-db"
        self.net = f"{PREFIX}{run}-net"
        self.container = f"{PREFIX}{run}"
        self.volume_id = ""
        self.image = oslab.Image(GiB)


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    lab = oslab.open_lab()
    c1, c2 = lab.conn(R1), lab.conn(R2)
    for c in (c1, c2):
        oslab.sweep(c, PREFIX)
    a = App(lab, uuid.uuid4().hex[:6])
    net = c1.network.create_network(name=a.net)
    c1.network.create_subnet(network_id=net.id, name=f"{a.net}-sub", cidr="10.77.0.0/24",
                             ip_version=4, gateway_ip="10.77.0.1")  # fmt: skip
    dr = c2.network.create_network(name=f"{a.net}-dr")
    c2.network.create_subnet(network_id=dr.id, name=f"{a.net}-dr-sub", cidr="10.77.0.0/24",
                             ip_version=4, gateway_ip="10.77.0.1")  # fmt: skip
    flavor = c1.compute.create_flavor(name=f"{PREFIX}{a.run}-tiny", vcpus=1, ram=128, disk=0)
    # the recovery region offers a flavor that fits (the engine picks the smallest one)
    c2.compute.create_flavor(name=f"{PREFIX}{a.run}-tiny", vcpus=1, ram=128, disk=0)
    vol = c1.block_storage.create_volume(size=1, name=f"{a.server}-boot")
    vol = c1.block_storage.wait_for_status(vol, "available", failures=["error"], wait=300)
    c1.block_storage.set_volume_bootable_status(vol, True)
    a.volume_id = vol.id
    for off in (0, 200 * MiB + 4096, GiB - MiB):
        data = os.urandom(MiB)
        oslab.write_volume(lab, R1, vol.id, off, data)
        a.image.write(off, data)
    srv = c1.compute.create_server(
        name=a.server,
        flavor_id=flavor.id,
        networks=[{"uuid": net.id}],
        block_device_mapping=[
            {
                "uuid": vol.id,
                "source_type": "volume",
                "destination_type": "volume",
                "boot_index": 0,
                "delete_on_termination": False,
            }
        ],
    )
    c1.compute.wait_for_server(srv, wait=300)
    try:
        yield a
    finally:
        if not os.environ.get("HAVEN_TEST_KEEP"):  # debugging: keep what the test made
            for c in (c1, c2):
                oslab.sweep(c, PREFIX)
            _drop_container(lab, a.container)


def _drop_container(lab: oslab.Lab, container: str) -> None:
    backend = lab.swift(container)
    try:
        drop_container(backend)
    except (BackendError, ObjectNotFound):  # nothing was written: nothing to remove
        pass
    finally:
        backend.close()


def _start_engine(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec_text: str
) -> Iterator[None]:
    from haven.engine import connect, runtime

    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HAVEN_CATALOG_URL", raising=False)
    monkeypatch.delenv("HAVEN_ENGINE_URL", raising=False)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", app.lab.clouds_yaml)
    monkeypatch.setenv("HEN_REPO_PASSWORD", uuid.uuid4().hex)
    for k, v in _swift_env(app.lab).items():
        monkeypatch.setenv(k, v)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    cat = Catalog.open()
    apply_spec(cat, load_spec(spec))
    services.use_catalog(cat)
    try:
        yield
    finally:
        runtime.shutdown()
        connect.forget_all()
        services.use_catalog(None)


@pytest.fixture
def engine(app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    text = SPEC.format(container=app.container, server=app.server, net=app.net)
    yield from _start_engine(app, tmp_path, monkeypatch, text)


@pytest.fixture
def native_engine(app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from _start_engine(
        app, tmp_path, monkeypatch, NATIVE_SPEC.format(server=app.server, net=app.net)
    )


def _mine(conn: Any) -> dict[str, set[str]]:
    """This test's resources at a region by name (the engine names what it creates after
    the group, ``hen``; the lab is shared, so project-wide counts would see others')."""

    def ours(items: Any) -> set[str]:
        return {x.name for x in items if (x.name or "").startswith(PREFIX)}

    return {
        "servers": ours(conn.compute.servers()),
        "volumes": ours(conn.block_storage.volumes()),
        "networks": ours(conn.network.networks()),
        "ports": {p.id for p in conn.network.ports() if (p.name or "").startswith(PREFIX)},
    }


def _run(kind: OperationKind, wf: Any, *args: Any, group: str = "hen") -> dict[str, Any]:
    op = service.run(kind, group, wf, *args)
    assert op.state is OperationState.SUCCEEDED, op.error
    return {**op.result, "op_id": op.id}


def test_protect_drill_failover_failback_through_the_swift_repository(
    app: App, engine: None
) -> None:
    c2 = app.lab.conn(R2)
    first = _run(OperationKind.PROTECT, protect_workflow, "hen")
    p1 = resolve.point("hen", first["point"])
    change = os.urandom(3 * MiB)
    oslab.write_volume(app.lab, R1, app.volume_id, 500 * MiB, change)
    app.image.write(500 * MiB, change)
    second = _run(OperationKind.PROTECT, protect_workflow, "hen")
    p2 = resolve.point("hen", second["point"])
    sent1 = sum(v.bytes_sent for v in p1.volumes)
    sent2 = sum(v.bytes_sent for v in p2.volumes)
    print(f"\nfigures: point 1 read {sum(v.bytes_read for v in p1.volumes)} B, sent {sent1} B; "
          f"point 2 read {sum(v.bytes_read for v in p2.volumes)} B, sent {sent2} B")  # fmt: skip
    assert sent1 >= 3 * MiB  # the written MiBs went to Swift
    assert 0 < sent2 <= 5 * MiB  # only the changed chunks (1 MiB each) went again

    before = _mine(c2)
    drill = _run(OperationKind.TEST_FAILOVER, drill_workflow, "hen")
    assert drill["bubble"] == f"{app.net}-bubble"
    during = _mine(c2)
    assert f"{app.net}-bubble" in during["networks"]
    assert any(n.endswith("-drill") for n in during["volumes"])
    _run(OperationKind.CLEANUP, cleanup_workflow, drill["op_id"])
    assert _mine(c2) == before

    fo = _run(OperationKind.FAILOVER, failover_workflow, "hen")
    print(f"figures: failover {fo}")
    placement = resolve.placement(resolve.group("hen"))
    assert placement.active_site == "r2"
    sid = placement.servers[app.server]
    srv = c2.compute.get_server(sid)
    assert srv.status == "ACTIVE"
    ports = list(c2.network.ports(device_id=sid))
    nets = {c2.network.get_network(p.network_id).name for p in ports}
    assert nets == {f"{app.net}-dr"}
    vols = [att.volume_id for att in c2.compute.volume_attachments(srv)]
    assert len(vols) == 1
    assert oslab.volume_digest(app.lab, R2, vols[0]) == app.image.digest()

    # the application runs at RegionTwo and writes; failback brings it home: OpenStack
    # cannot re-image a once-snapshotted volume in place, so the stale home server goes
    # (its volume kept) and the application comes back on a restored volume
    at_dr = os.urandom(2 * MiB)
    oslab.write_volume(app.lab, R2, vols[0], 100 * MiB, at_dr)
    app.image.write(100 * MiB, at_dr)
    fb = _run(OperationKind.FAILBACK, failback_workflow, "hen")
    print(f"figures: failback {fb}")
    home = resolve.placement(resolve.group("hen"))
    assert home.active_site == "r1"
    c1 = app.lab.conn(R1)
    srv1 = c1.compute.get_server(home.servers[app.server])
    assert srv1.status == "ACTIVE"
    home_vols = [att.volume_id for att in c1.compute.volume_attachments(srv1)]
    assert len(home_vols) == 1 and home_vols[0] != app.volume_id
    assert oslab.volume_digest(app.lab, R1, home_vols[0]) == app.image.digest()
    assert c1.block_storage.get_volume(app.volume_id).status == "available"  # kept
    assert c2.compute.get_server(sid).status == "SHUTOFF"  # the DR copy stays, stopped


def test_cinder_backup_data_path_chosen_by_policy(app: App, native_engine: None) -> None:
    """Policy data_path cinder-backup: points are Cinder backups (incremental after the
    first) whose records travel in the point; failover imports and restores them."""
    from haven.sites.openstack import nativecopy

    c2 = app.lab.conn(R2)
    for old in c2.compute.servers(name=f"^{app.server}$"):  # the other test's failover
        c2.compute.delete_server(old)
        c2.compute.wait_for_delete(old, wait=300)
    for port in c2.network.ports(name=f"{app.server}-0"):  # its port keeps the fixed IP
        c2.network.delete_port(port)
    c1 = app.lab.conn(R1)
    (home,) = c1.compute.servers(name=f"^{app.server}$")
    # the server's volume now (after the other test's failback, a restored one)
    (vid,) = [att.volume_id for att in c1.compute.volume_attachments(home)]
    first = _run(OperationKind.PROTECT, protect_workflow, "hencb", group="hencb")
    change = os.urandom(2 * MiB)
    oslab.write_volume(app.lab, R1, vid, 700 * MiB, change)
    app.image.write(700 * MiB, change)
    second = _run(OperationKind.PROTECT, protect_workflow, "hencb", group="hencb")
    p1 = resolve.point("hencb", first["point"])
    p2 = resolve.point("hencb", second["point"])
    assert all(v.native for v in p1.volumes + p2.volumes)
    chain1 = nativecopy.from_ref(p1.volumes[0].manifest).chain
    chain2 = nativecopy.from_ref(p2.volumes[0].manifest).chain
    assert [r.incremental for r in chain2][-1] and chain2[:-1] == chain1
    fo = _run(OperationKind.FAILOVER, failover_workflow, "hencb", group="hencb")
    print(f"\nfigures: cinder-backup failover {fo}")
    sid = resolve.placement(resolve.group("hencb")).servers[app.server]
    srv = c2.compute.get_server(sid)
    assert srv.status == "ACTIVE"
    vols = [att.volume_id for att in c2.compute.volume_attachments(srv)]
    assert oslab.volume_digest(app.lab, R2, vols[0]) == app.image.digest()
