"""One contract for every site driver: the in-memory fake, libvirt (marked `kvm`) and
OpenStack (marked `openstack`, RegionOne of the OpenStack lab).

Each driver is wrapped in a small harness that can give the suite a running server with a
data disk "vda" and change that disk's data from inside the guest; everything else goes
through the SiteDriver protocol only. A driver that lacks a capability (OpenStack: no guest
agent, no changed-block tracking) is checked for what it declares instead: tests that need
the capability skip with the reason, parts of a test that need it take the other branch.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest
from tests.conftest import lab_unavailable

from haven.domain.inventory import (
    BootSpec,
    Consistency,
    DiskRole,
    DiskSpec,
    NicSpec,
    PowerState,
    ServerSpec,
)
from haven.sites.base import (
    AgentGate,
    Capability,
    PointRequest,
    QuiesceMember,
    SiteDriver,
    TcpGate,
)
from haven.sites.errors import SiteInputError, SiteNotFound

SIZE = 64 * 1024 * 1024
GiB = 1024 * 1024 * 1024
# what fake and libvirt must declare; a harness may name a smaller set (``required``)
FULL = (
    Capability.GUEST_QUIESCE
    | Capability.GROUP_SNAPSHOT
    | Capability.CHANGED_BLOCK_TRACKING
    | Capability.VOLUME_CREATION
)


class Harness(Protocol):
    driver: SiteDriver
    server_id: str
    required: Capability  # capabilities the driver must declare
    src_name: str  # the name of the server the harness started
    network: str  # the network of its NIC
    size: int  # the size of its disk "vda"
    name_prefix: str  # prefix for everything the suite creates at the site
    kernel_boot: bool  # the server boots a kernel directly (else from its boot volume)

    def new_spec(self, name: str) -> ServerSpec: ...
    def fill_volume(self, writer: object) -> None: ...
    def guest_write(self, payload: bytes) -> None: ...


class FakeHarness:
    required = FULL
    src_name, network, size, name_prefix, kernel_boot = "ct-src", "app-net", SIZE, "", True

    def __init__(self) -> None:
        from haven.sites.fake import FakeDriver

        self.fake = FakeDriver("fake-site")
        self.driver: SiteDriver = self.fake
        self.server_id = self.fake.add_server(self.new_spec("ct-src"))
        self.fake.write_disk(self.server_id, "vda", 1024, b"superblock")

    def new_spec(self, name: str) -> ServerSpec:
        return ServerSpec(name, 1, 128, (DiskSpec("vda", SIZE),), (NicSpec("app-net"),),
                          BootSpec(kernel="/boot/vmlinux"))  # fmt: skip

    def fill_volume(self, writer: object) -> None:
        writer.write(1024, b"superblock")
        writer.flush()

    def guest_write(self, payload: bytes) -> None:
        self.fake.write_disk(self.server_id, "vda", 8 * 1024 * 1024, payload)


class LibvirtHarness:
    required = FULL
    src_name, network, size, name_prefix, kernel_boot = "ct-src", "app-net", SIZE, "", True

    def __init__(self) -> None:
        from haven_lab import kvm

        self.kit = kvm
        try:
            self.lab = kvm.open_lab()
        except kvm.LabMissing as exc:
            lab_unavailable(str(exc))
        self.driver = self.lab.a  # type: ignore[assignment]
        kvm.remove_prefixed(self.driver, "ct-")
        (src,) = kvm.boot_guests(self.driver, self.lab.env, [self.new_spec("ct-src")])
        self.server_id = src.id

    def new_spec(self, name: str) -> ServerSpec:
        return self.kit.guest_spec(self.lab.env, name)

    def fill_volume(self, writer: object) -> None:
        self.kit.write_nonzero(writer, self.kit.template(self.lab.env))

    def guest_write(self, payload: bytes) -> None:
        # through the guest's filesystem, as an application would; sync so it hits the disk
        r = self.driver.guest_exec(
            self.server_id, ["sh", "-c", "cat > /data/contract.bin && sync"], 30, payload
        )
        assert r.exit_code == 0, r.stderr

    def close(self) -> None:
        self.kit.remove_guests(self.driver, [self.server_id])
        self.kit.remove_prefixed(self.driver, "ct-")


class OpenStackHarness:
    """RegionOne of the OpenStack lab (fake compute): a server that boots from a 1 GiB
    volume "vda" on its own network. No guest runs, so "guest writes" go into the volume's
    file on the region's share, as oslab does. Everything is named ``hdp-<run>-...`` and
    removed by ``close`` (also when setting up fails half-way)."""

    required = (
        Capability.GROUP_SNAPSHOT
        | Capability.VOLUME_CREATION
        | Capability.SERVER_DEFINITION
        | Capability.READINESS_TCP
    )
    size = GiB  # Cinder sizes volumes in GiB
    kernel_boot = False

    def __init__(self) -> None:
        from tests.integration.openstack import oslab

        from haven.sites.openstack.driver import OpenStackDriver

        self.oslab = oslab
        self.lab = oslab.open_lab()
        self.name_prefix = f"hdp-{uuid.uuid4().hex[:6]}-"
        self.src_name = f"{self.name_prefix}ct-src"
        self.network = f"{self.name_prefix}app-net"
        self.conn = self.lab.conn(oslab.R1)
        self.driver: SiteDriver = OpenStackDriver(
            f"{self.name_prefix}ct", oslab.CLOUD, oslab.R1, self.lab.clouds_yaml,
            group_name=f"{self.name_prefix}ct-group",
        )  # fmt: skip
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        c, p = self.conn, self.name_prefix
        net = c.network.create_network(name=self.network)
        c.network.create_subnet(network_id=net.id, name=f"{p}subnet", cidr="10.77.0.0/24",
                                ip_version=4)  # fmt: skip
        flavor = c.compute.create_flavor(name=f"{p}small", vcpus=1, ram=128, disk=0)
        vol = c.block_storage.create_volume(size=1, name=f"{p}ct-src-vda")
        vol = c.block_storage.wait_for_status(vol, "available", failures=["error"], wait=300)
        c.block_storage.set_volume_bootable_status(vol, True)
        self.volume_id = vol.id
        self.oslab.write_volume(self.lab, self.oslab.R1, vol.id, 1024, b"superblock")
        bdm = {
            "uuid": vol.id,
            "source_type": "volume",
            "destination_type": "volume",
            "boot_index": 0,
            "device_name": "/dev/vda",
            "delete_on_termination": False,
        }
        s = c.compute.create_server(
            name=self.src_name,
            flavor_id=flavor.id,
            networks=[{"uuid": net.id}],
            block_device_mapping=[bdm],
        )
        self.server_id = c.compute.wait_for_server(s, wait=300).id

    def new_spec(self, name: str) -> ServerSpec:
        return ServerSpec(name, 1, 128, (DiskSpec("vda", self.size, DiskRole.BOOT, "raw"),),
                          (NicSpec(self.network),))  # fmt: skip

    def fill_volume(self, writer: object) -> None:
        writer.write(1024, b"superblock")
        writer.flush()

    def guest_write(self, payload: bytes) -> None:
        self.oslab.write_volume(self.lab, self.oslab.R1, self.volume_id, 8 * 1024 * 1024, payload)

    def close(self) -> None:
        """Remove what this harness (and the suite through its driver) created."""
        import contextlib

        c, p = self.conn, self.name_prefix
        cmp, bs, net = c.compute, c.block_storage, c.network
        mine = [s for s in cmp.servers() if s.name.startswith(p)]
        for s in mine:
            cmp.delete_server(s, ignore_missing=True)
        for s in mine:
            cmp.wait_for_delete(s, wait=300)
        for point_id in list(getattr(self.driver, "_points", {})):
            with contextlib.suppress(Exception):
                self.driver.delete_point(point_id)
        for g in bs.groups():
            if (g.name or "").startswith(p):
                bs.delete_group(g, delete_volumes=True)
                _wait_gone(lambda g=g: bs.find_group(g.id))
        for v in bs.volumes():
            if (v.name or "").startswith(p):
                bs.wait_for_status(v, "available", failures=["error"], wait=300)
                bs.delete_volume(v, ignore_missing=True)
                _wait_gone(lambda v=v: bs.find_volume(v.id))
        for f in cmp.flavors():
            if f.name.startswith(p):
                cmp.delete_flavor(f, ignore_missing=True)
        for n in net.networks():
            if n.name.startswith(p):
                for port in net.ports(network_id=n.id):
                    net.delete_port(port, ignore_missing=True)
                net.delete_network(n, ignore_missing=True)


def _wait_gone(find, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while find() is not None:
        assert time.monotonic() < deadline, "deletion did not finish"
        time.sleep(1)


@pytest.fixture(
    scope="module",
    params=[
        "fake",
        pytest.param("libvirt", marks=pytest.mark.kvm),
        pytest.param("openstack", marks=pytest.mark.openstack),
    ],
)
def site(request: pytest.FixtureRequest) -> Iterator[Harness]:
    kinds = {"fake": FakeHarness, "libvirt": LibvirtHarness, "openstack": OpenStackHarness}
    h = kinds[request.param]()
    yield h
    if isinstance(h, (LibvirtHarness, OpenStackHarness)):
        h.close()


def _skip_without(site: Harness, cap: Capability, why: str) -> None:
    if cap not in site.driver.capabilities():
        pytest.skip(f"{type(site.driver).__name__} declares no {cap.name}: {why}")


def test_declares_capabilities(site: Harness) -> None:
    caps = site.driver.capabilities()
    assert isinstance(caps, Capability)
    for needed in site.required:
        assert needed in caps


def test_inventory_lists_server_disks_and_networks(site: Harness) -> None:
    servers = {s.id: s for s in site.driver.list_servers()}
    assert site.server_id in servers
    info = servers[site.server_id]
    assert info.state is PowerState.RUNNING
    assert [(d.target, d.size_bytes) for d in info.spec.disks] == [("vda", site.size)]
    assert site.network in {n.name for n in site.driver.list_networks()}
    spec = site.driver.capture_server(site.server_id)
    assert spec.name == site.src_name and spec.vcpus == 1 and spec.memory_mib > 0
    assert [n.network for n in spec.nics] == [site.network]
    if site.kernel_boot:
        assert spec.boot.kernel
    else:
        assert spec.disks[0].role is DiskRole.BOOT


def test_unknown_server_is_not_found(site: Harness) -> None:
    with pytest.raises(SiteNotFound):
        site.driver.get_server(str(uuid.uuid4()))


def test_agent_ping_and_exec(site: Harness) -> None:
    if Capability.GUEST_EXEC not in site.driver.capabilities():
        assert not site.driver.agent_ping(site.server_id)  # it must not claim an agent
    _skip_without(site, Capability.GUEST_EXEC, "no guest agent to run commands")
    assert site.driver.agent_ping(site.server_id)
    res = site.driver.guest_exec(site.server_id, ["echo", "hello", "haven"], timeout_s=20)
    assert (res.exit_code, res.stdout) == (0, b"hello haven\n")
    assert site.driver.guest_exec(site.server_id, ["false"], timeout_s=20).exit_code == 1


def _read_all(reader: object) -> bytearray:
    buf = bytearray(reader.size)
    assert reader.readinto(0, memoryview(buf)) == len(buf)
    return buf


def test_full_then_incremental_point(site: Harness) -> None:
    d, sid = site.driver, site.server_id
    caps = d.capabilities()
    tag = uuid.uuid4().hex[:8]
    p1 = d.create_point(PointRequest(f"{site.name_prefix}ct1-{tag}", (QuiesceMember(sid),)))
    try:
        if Capability.GUEST_QUIESCE in caps:
            assert p1.consistency is Consistency.APPLICATION and p1.reason is None
            assert p1.freeze_window_s > 0
            assert [s.action for s in p1.steps] == ["freeze", "thaw"]
        else:  # crash-consistent, and the point says why
            assert p1.consistency is Consistency.CRASH and p1.reason
            assert p1.steps == () and p1.freeze_window_s == 0
        (disk,) = p1.disks
        assert (disk.target, disk.size_bytes, disk.incremental) == ("vda", site.size, False)
        with d.open_point_disk(p1, disk) as r:
            assert r.size == site.size and r.changed_extents() is None
            base = _read_all(r)
        assert b"superblock" in base or base[1080:1082] == b"\x53\xef"  # fake | ext4 magic
    finally:
        d.release_point(p1)

    payload = os.urandom(60 * 1024)  # guest-exec stdin is limited to 64 KiB
    site.guest_write(payload)
    p2 = d.create_point(
        PointRequest(
            f"{site.name_prefix}ct2-{tag}", (QuiesceMember(sid),), parent_point_id=p1.point_id
        )
    )
    try:
        (disk2,) = p2.disks
        if Capability.CHANGED_BLOCK_TRACKING not in caps:  # a full point: read it all
            assert not disk2.incremental
            with d.open_point_disk(p2, disk2) as r:
                assert r.changed_extents() is None
                full = _read_all(r)
            at = full.find(payload)
            assert at >= 0, "the guest's write must be in the next point"
            base[at : at + len(payload)] = payload
            assert base == full, "the point must differ from its parent only by the write"
            return
        assert disk2.incremental
        with d.open_point_disk(p2, disk2) as r:
            changed = r.changed_extents()
            assert changed, "an incremental after a write must report changed extents"
            for e in changed:
                buf = bytearray(e.length)
                assert r.readinto(e.offset, buf) == e.length
                base[e.offset : e.end] = buf
            read = r.bytes_read
            full = _read_all(r)
        assert len(payload) <= read <= SIZE // 8, "an incremental reads only changed extents"
        assert bytes(base) == full, "parent + changed extents must equal the point"
        assert payload in full
    finally:
        d.release_point(p2)
        d.delete_point(p2.point_id)
        d.delete_point(p1.point_id)


def test_incremental_without_parent_checkpoint_fails(site: Harness) -> None:
    _skip_without(site, Capability.CHANGED_BLOCK_TRACKING,
                  "every point is full, a parent names no checkpoint to require")  # fmt: skip
    req = PointRequest("ct-orphan", (QuiesceMember(site.server_id),), parent_point_id="nope")
    with pytest.raises((SiteNotFound, Exception)) as info:
        site.driver.create_point(req)
    assert "nope" in str(info.value) or isinstance(info.value, SiteNotFound)
    site.driver.release_point(_handle("ct-orphan"))  # releasing an unknown point is a no-op


def _handle(point_id: str):  # type: ignore[no-untyped-def]
    from haven.sites.base import PointHandle

    return PointHandle(point_id, "x", None, Consistency.CRASH, (), 0.0)


def test_volume_define_start_ready_destroy(site: Harness) -> None:
    d = site.driver
    name = f"{site.name_prefix}ct-new-{uuid.uuid4().hex[:6]}"
    vol = d.create_volume(f"{name}-vda", site.size)
    assert vol.size_bytes == site.size and vol.id in {v.id for v in d.list_volumes()}
    with d.open_volume_writer(vol) as w:
        assert w.fresh and w.size == site.size
        site.fill_volume(w)
    spec = site.new_spec("template")
    with pytest.raises(SiteInputError):
        d.define_server(spec, name=name, network_map={}, volumes={"vda": vol})
    net = {site.network: site.network}
    sid = d.define_server(spec, name=name, network_map=net, volumes={"vda": vol})
    try:
        assert d.get_server(sid).state is PowerState.SHUTOFF
        d.start_server(sid)
        # without an agent, "ready" is the server running (the gate list is empty)
        gates = [AgentGate()] if Capability.READINESS_AGENT in d.capabilities() else []
        ready = d.wait_ready(sid, gates, timeout_s=120)
        assert ready.ready, ready.detail
        assert d.get_server(sid).state is PowerState.RUNNING
        assert d.get_server(sid).name == name
    finally:
        d.destroy_server(sid)
        assert d.get_server(sid).state is PowerState.SHUTOFF
        d.undefine_server(sid)
        d.delete_volume(vol)
    assert sid not in {s.id for s in d.list_servers()}
    assert vol.id not in {v.id for v in d.list_volumes()}


def test_tcp_readiness_gate(site: Harness) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        ok = site.driver.wait_ready(site.server_id, [TcpGate("127.0.0.1", port)], 5)
        assert ok.ready and ok.passed == ("TcpGate",)
    closed = site.driver.wait_ready(site.server_id, [TcpGate("127.0.0.1", port)], 0.3)
    assert not closed.ready and "TcpGate" in closed.detail


def test_a_volume_at_rest_is_taken_into_a_point_with_the_servers(site: Harness) -> None:
    """PointRequest.volumes: a volume attached to nothing, captured at the point's instant
    (a write after it is not in the point), readable until the point is released."""
    _skip_without(site, Capability.STANDALONE_VOLUMES, "volumes are only points of servers")
    d = site.driver
    vol = d.create_volume(f"{site.name_prefix}ct-rest-{uuid.uuid4().hex[:6]}", 4 * 1024 * 1024)
    data = os.urandom(256 * 1024)
    point_id = f"{site.name_prefix}ct-vol-{uuid.uuid4().hex[:8]}"
    try:
        with d.open_volume_writer(vol) as w:
            w.write(0, data)
            w.flush()
        p = d.create_point(PointRequest(point_id, (QuiesceMember(site.server_id),),
                                        volumes=(vol.id,)))  # fmt: skip
        try:
            standalone = [disk for disk in p.disks if disk.volume]
            assert [(x.volume, x.server_id, x.size_bytes) for x in standalone] == [
                (vol.id, "", vol.size_bytes)
            ]
            assert len(p.disks) == 2  # the server's vda too, in the same point
            with d.open_volume_writer(vol) as w:
                w.write(0, b"after the point")
                w.flush()
            with d.open_point_disk(p, standalone[0]) as r:
                assert r.changed_extents() is None
                assert bytes(_read_all(r)[: len(data)]) == data
        finally:
            d.release_point(p)
            d.delete_point(point_id)
    finally:
        d.delete_volume(vol)
