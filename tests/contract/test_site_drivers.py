"""One contract for every site driver: the in-memory fake and libvirt (marked `kvm`).

Each driver is wrapped in a small harness that can give the suite a running server with a
data disk "vda" and change that disk's data from inside the guest; everything else goes
through the SiteDriver protocol only.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest
from tests.conftest import lab_unavailable

from haven.domain.inventory import BootSpec, Consistency, DiskSpec, NicSpec, PowerState, ServerSpec
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


class Harness(Protocol):
    driver: SiteDriver
    server_id: str

    def new_spec(self, name: str) -> ServerSpec: ...
    def fill_volume(self, writer: object) -> None: ...
    def guest_write(self, payload: bytes) -> None: ...


class FakeHarness:
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
    def __init__(self) -> None:
        from tests.integration.kvm import labkit

        self.kit = labkit
        try:
            self.lab = labkit.open_lab()
        except labkit.LabMissing as exc:
            lab_unavailable(str(exc))
        self.driver = self.lab.a  # type: ignore[assignment]
        labkit.remove_leftovers(self.driver, "ct-")
        (self.server_id,) = labkit.boot_guests(self.driver, [self.new_spec("ct-src")])

    def new_spec(self, name: str) -> ServerSpec:
        return self.kit.guest_spec(self.lab, name)

    def fill_volume(self, writer: object) -> None:
        self.kit.write_nonzero(writer, self.kit.template())

    def guest_write(self, payload: bytes) -> None:
        # through the guest's filesystem, as an application would; sync so it hits the disk
        r = self.driver.guest_exec(
            self.server_id, ["sh", "-c", "cat > /data/contract.bin && sync"], 30, payload
        )
        assert r.exit_code == 0, r.stderr

    def close(self) -> None:
        self.kit.remove_guests(self.driver, [self.server_id])
        self.kit.remove_leftovers(self.driver, "ct-")


@pytest.fixture(
    scope="module", params=["fake", pytest.param("libvirt", marks=pytest.mark.kvm)]
)  # fmt: skip
def site(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = FakeHarness() if request.param == "fake" else LibvirtHarness()
    yield h
    if isinstance(h, LibvirtHarness):
        h.close()


def test_declares_capabilities(site: Harness) -> None:
    caps = site.driver.capabilities()
    assert isinstance(caps, Capability)
    for needed in (Capability.GUEST_QUIESCE, Capability.GROUP_SNAPSHOT,
                   Capability.CHANGED_BLOCK_TRACKING, Capability.VOLUME_CREATION):  # fmt: skip
        assert needed in caps


def test_inventory_lists_server_disks_and_networks(site: Harness) -> None:
    servers = {s.id: s for s in site.driver.list_servers()}
    assert site.server_id in servers
    info = servers[site.server_id]
    assert info.state is PowerState.RUNNING
    assert [(d.target, d.size_bytes) for d in info.spec.disks] == [("vda", SIZE)]
    assert "app-net" in {n.name for n in site.driver.list_networks()}
    spec = site.driver.capture_server(site.server_id)
    assert spec.name == "ct-src" and spec.vcpus == 1 and spec.memory_mib > 0
    assert [n.network for n in spec.nics] == ["app-net"]
    assert spec.boot.kernel


def test_unknown_server_is_not_found(site: Harness) -> None:
    with pytest.raises(SiteNotFound):
        site.driver.get_server(str(uuid.uuid4()))


def test_agent_ping_and_exec(site: Harness) -> None:
    assert site.driver.agent_ping(site.server_id)
    res = site.driver.guest_exec(site.server_id, ["echo", "hello", "haven"], timeout_s=20)
    assert (res.exit_code, res.stdout) == (0, b"hello haven\n")
    assert site.driver.guest_exec(site.server_id, ["false"], timeout_s=20).exit_code == 1


def _read_all(reader: object) -> bytes:
    buf = bytearray(reader.size)
    assert reader.readinto(0, memoryview(buf)) == len(buf)
    return bytes(buf)


def test_full_then_incremental_point(site: Harness) -> None:
    d, sid = site.driver, site.server_id
    tag = uuid.uuid4().hex[:8]
    p1 = d.create_point(PointRequest(f"ct1-{tag}", (QuiesceMember(sid),)))
    try:
        assert p1.consistency is Consistency.APPLICATION and p1.reason is None
        assert p1.freeze_window_s > 0
        assert [s.action for s in p1.steps] == ["freeze", "thaw"]
        (disk,) = p1.disks
        assert (disk.target, disk.size_bytes, disk.incremental) == ("vda", SIZE, False)
        with d.open_point_disk(p1, disk) as r:
            assert r.size == SIZE and r.changed_extents() is None
            base = bytearray(_read_all(r))
        assert b"superblock" in base or base[1080:1082] == b"\x53\xef"  # fake | ext4 magic
    finally:
        d.release_point(p1)

    payload = os.urandom(60 * 1024)  # guest-exec stdin is limited to 64 KiB
    site.guest_write(payload)
    p2 = d.create_point(
        PointRequest(f"ct2-{tag}", (QuiesceMember(sid),), parent_point_id=p1.point_id)
    )
    try:
        (disk2,) = p2.disks
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
    name = f"ct-new-{uuid.uuid4().hex[:6]}"
    vol = d.create_volume(f"{name}-vda", SIZE)
    assert vol.size_bytes == SIZE and vol.id in {v.id for v in d.list_volumes()}
    with d.open_volume_writer(vol) as w:
        assert w.fresh and w.size == SIZE
        site.fill_volume(w)
    spec = site.new_spec("template")
    with pytest.raises(SiteInputError):
        d.define_server(spec, name=name, network_map={}, volumes={"vda": vol})
    sid = d.define_server(spec, name=name, network_map={"app-net": "app-net"}, volumes={"vda": vol})
    try:
        assert d.get_server(sid).state is PowerState.SHUTOFF
        d.start_server(sid)
        ready = d.wait_ready(sid, [AgentGate()], timeout_s=120)
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
