"""The quiesce ladder against the OpenStack lab's answers (RegionOne, admin credentials).

The lab's Nova runs a fake compute driver: its "hypervisor" is not libvirt, and Nova's
fake driver acknowledges quiesce without doing anything. Checked here:
- admin sees each server's libvirt domain name and hypervisor (the libvirt rung's inputs),
  and the rung falls through with the right reason when the configured libvirt host has
  no such domain or no guest agent (libvirt's own ``test:///default`` driver);
- the Nova rung on a boot-from-volume server whose boot volume carries
  ``os_require_quiesce=yes``: real createImage, the property travels volume metadata ->
  instance -> snapshot image (so Nova's "fail instead of skip" guard was in force), the
  point is nevertheless CRASH because the hypervisor is ``fake``; Nova's snapshots become
  the point's, hold the volume's bytes, and the image is gone;
- without the property the Nova rung is not tried and the reason says why.

Every resource carries the ``hqs`` prefix; only that prefix is swept.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from tests.conftest import lab_unavailable
from tests.integration.openstack import oslab
from tests.integration.openstack.oslab import R1, MiB

from haven.domain.points import Consistency
from haven.sites.base import PointRequest, QuiesceMember
from haven.sites.openstack import snapshots
from haven.sites.openstack.quiesce import NOVA_METHOD, QuiesceConfig, Rung, take_point

pytestmark = [pytest.mark.openstack, pytest.mark.slow]

PREFIX = "hqs"
GiB = 1024 * MiB


def _sweep(c: Any, prefix: str) -> None:
    """Remove what an interrupted run of this module left (names containing ``prefix``
    where Haven or this module put it); nothing else."""
    cmp, bs = c.compute, c.block_storage
    servers = [s for s in cmp.servers() if s.name.startswith(prefix)]
    for s in servers:
        cmp.delete_server(s)
    for s in servers:
        cmp.wait_for_delete(s, wait=300)
    for img in c.image.images():
        if (img.name or "").startswith(f"haven-{prefix}"):
            c.image.delete_image(img, ignore_missing=True)
    mine = (f"haven-{prefix}", f"snapshot for haven-{prefix}")
    snaps = [s for s in bs.snapshots() if (s.name or "").startswith(mine)]
    for s in snaps:
        with contextlib.suppress(Exception):
            bs.delete_snapshot(s, ignore_missing=True)
    for s in snaps:
        _gone(partial(bs.find_snapshot, s.id))
    for v in bs.volumes():
        if (v.name or "").startswith(prefix) and v.status in ("available", "error"):
            bs.delete_volume(v, ignore_missing=True)
    for f in cmp.flavors():
        if f.name.startswith(prefix):
            cmp.delete_flavor(f)


def _gone(find: Callable[[], Any], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while find() is not None:
        assert time.monotonic() < deadline, "deletion did not finish"
        time.sleep(1)


@pytest.fixture(scope="module")
def lab() -> oslab.Lab:
    return oslab.open_lab()


@pytest.fixture(scope="module")
def site(lab: oslab.Lab) -> Iterator[dict[str, Any]]:
    """``solo``: boots from a volume with os_require_quiesce=yes, plus a data volume;
    ``plain``: boots from a volume without it. Known bytes in the solo data volume."""
    c = lab.conn(R1)
    _sweep(c, PREFIX)
    p = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    bs = c.block_storage
    flavor = c.compute.create_flavor(name=f"{p}-tiny", vcpus=1, ram=128, disk=0)
    vols = {
        n: bs.create_volume(size=1, name=f"{p}-{n}")
        for n in ("solo-boot", "solo-data", "plain-boot")
    }
    state: dict[str, Any] = {"prefix": p, "vols": {}, "servers": {}, "conn": c}
    try:
        for n, v in vols.items():
            v = bs.wait_for_status(bs.get_volume(v.id), "available", failures=["error"], wait=300)
            state["vols"][n] = v.id
            if n.endswith("-boot"):
                bs.set_volume_bootable_status(v.id, True)
        bs.set_volume_image_metadata(
            state["vols"]["solo-boot"], os_require_quiesce="yes", hw_qemu_guest_agent="yes"
        )
        img = oslab.Image(GiB)
        for off in (0, 512 * MiB + 4096):
            data = os.urandom(MiB)
            oslab.write_volume(lab, R1, state["vols"]["solo-data"], off, data)
            img.write(off, data)
        state["data_digest"] = img.digest()
        layout = {"solo": ["solo-boot", "solo-data"], "plain": ["plain-boot"]}
        for srv, names in layout.items():
            bdm = [
                {
                    "uuid": state["vols"][n],
                    "source_type": "volume",
                    "destination_type": "volume",
                    "boot_index": 0 if n.endswith("-boot") else -1,
                    "delete_on_termination": False,
                }
                for n in names
            ]
            s = c.compute.create_server(
                name=f"{p}-{srv}", flavor_id=flavor.id, networks="none", block_device_mapping=bdm
            )
            state["servers"][srv] = s.id
        for sid in state["servers"].values():
            c.compute.wait_for_server(c.compute.get_server(sid), wait=300)
        yield state
    finally:
        for sid in state["servers"].values():
            c.compute.delete_server(sid, ignore_missing=True)
        for sid in state["servers"].values():
            _gone(partial(c.compute.find_server, sid))
        _sweep(c, p)
        with contextlib.suppress(Exception):
            c.compute.delete_flavor(flavor, ignore_missing=True)


class Snapshotter:
    """The caller's snapshot step: per-volume Cinder snapshots (no group to clean up)."""

    def __init__(self, c: Any, point_id: str, volume_ids: list[str]) -> None:
        self.c, self.point_id, self.volume_ids = c, point_id, volume_ids
        self.calls = 0

    def __call__(self) -> snapshots.SnapshotSet:
        self.calls += 1
        return snapshots.snapshot_volumes(
            self.c, self.point_id, self.volume_ids, "unused", prefer_group=False
        )


def _request(point_id: str, server_id: str) -> PointRequest:
    return PointRequest(point_id, (QuiesceMember(server_id),), freeze_timeout_s=5.0)


def test_admin_sees_domain_and_host_and_libvirt_rung_falls_through(
    site: dict[str, Any],
) -> None:
    c, p = site["conn"], site["prefix"]
    sid = site["servers"]["plain"]
    s = c.compute.get_server(sid)
    assert s.instance_name and re.fullmatch(r"instance-[0-9a-f]{8}", s.instance_name)
    hypervisors = {h.name: h.hypervisor_type for h in c.compute.hypervisors(details=True)}
    assert s.hypervisor_hostname in hypervisors and s.compute_host
    assert hypervisors[s.hypervisor_hostname] == "fake"
    vids = [site["vols"]["plain-boot"]]

    # a real libvirt (its test driver) at the server's host: no domain of that name
    config = QuiesceConfig(libvirt_uris={s.hypervisor_hostname: "test:///default"})
    snap = Snapshotter(c, f"{p}-l1", vids)
    point = take_point(c, _request(f"{p}-l1", sid), vids, snap, config)
    try:
        assert point.consistency is Consistency.CRASH and point.rung is Rung.NONE
        assert point.reason is not None
        assert f"domain {s.instance_name!r} on {s.hypervisor_hostname}" in point.reason
        assert "test:///default" not in point.reason
        assert "lacks os_require_quiesce=yes" in point.reason  # then the Nova rung's reason
        assert snap.calls == 1 and point.snapset.method == "per-volume"
    finally:
        snapshots.delete_snapshot_set(c, point.snapset)

    # the domain exists (name override) but has no guest agent
    config = QuiesceConfig(
        libvirt_uris={s.hypervisor_hostname: "test:///default"}, domain_names={sid: "test"}
    )
    snap = Snapshotter(c, f"{p}-l2", vids)
    point = take_point(c, _request(f"{p}-l2", sid), vids, snap, config)
    try:
        assert point.reason is not None
        assert "guest agent of 'test'" in point.reason or "domain 'test'" in point.reason
        assert point.rung is Rung.NONE and snap.calls == 1
    finally:
        snapshots.delete_snapshot_set(c, point.snapset)


def test_nova_rung_on_fake_compute_is_crash_with_reason(
    lab: oslab.Lab, site: dict[str, Any]
) -> None:
    c, p = site["conn"], site["prefix"]
    sid = site["servers"]["solo"]
    vids = [site["vols"]["solo-boot"], site["vols"]["solo-data"]]
    snap = Snapshotter(c, f"{p}-n1", vids)
    t0 = time.monotonic()
    point = take_point(c, _request(f"{p}-n1", sid), vids, snap, QuiesceConfig())
    took = time.monotonic() - t0
    try:
        assert point.rung is Rung.NOVA_IMAGE and point.consistency is Consistency.CRASH
        assert point.reason is not None
        assert "hypervisor type 'fake' acknowledges quiesce without freezing" in point.reason
        assert snap.calls == 0 and point.snapset.method == NOVA_METHOD
        assert [v.volume_id for v in point.snapset.snaps] == vids
        for v in point.snapset.snaps:
            got = c.block_storage.get_snapshot(v.snapshot_id)
            assert got.status == "available" and got.name == f"haven-{p}-n1-{v.volume_name}"
        assert not [i for i in c.image.images() if i.name == f"haven-{p}-n1"]
        assert 0 < point.freeze_window_s <= took
        assert [st.action for st in point.steps] == ["nova-quiesce"] and point.steps[0].ok
        # Nova's snapshot of the data volume holds the bytes written before the point
        data_snap = point.snapset.for_volume(site["vols"]["solo-data"])
        bs = c.block_storage
        clone = bs.create_volume(size=1, snapshot_id=data_snap.snapshot_id, name=f"{p}-clone")
        try:
            bs.wait_for_status(clone, "available", failures=["error"], wait=300)
            assert oslab.volume_digest(lab, R1, clone.id) == site["data_digest"]
        finally:
            bs.delete_volume(clone.id, ignore_missing=True)
            _gone(lambda: bs.find_volume(clone.id))
        print(f"\nnova rung: {took:.1f}s, window bound {point.freeze_window_s:.1f}s")
    finally:
        snapshots.delete_snapshot_set(c, point.snapset)

    # the same createImage with 'fake' trusted: os_require_quiesce reached the image,
    # i.e. Nova's guard (fail instead of skipping the quiesce) was in force
    config = QuiesceConfig(noop_quiesce_hypervisors=frozenset())
    point = take_point(c, _request(f"{p}-n2", sid), vids, Snapshotter(c, "x", vids), config)
    try:
        assert point.rung is Rung.NOVA_IMAGE
        assert point.consistency is Consistency.APPLICATION and point.reason is None
    finally:
        snapshots.delete_snapshot_set(c, point.snapset)


def test_nova_rung_not_tried_without_require_quiesce(site: dict[str, Any]) -> None:
    c, p = site["conn"], site["prefix"]
    sid = site["servers"]["plain"]
    vids = [site["vols"]["plain-boot"]]
    snap = Snapshotter(c, f"{p}-c1", vids)
    point = take_point(c, _request(f"{p}-c1", sid), vids, snap, QuiesceConfig())
    try:
        assert point.consistency is Consistency.CRASH and point.rung is Rung.NONE
        assert point.reason == (
            "crash-consistent: compute-host libvirt: no libvirt URI configured for any "
            f"compute host; Nova image snapshot: server {sid}: its boot volume's image "
            "metadata lacks os_require_quiesce=yes, so Nova would skip a failed or "
            "unsupported quiesce silently (set os_require_quiesce=yes and "
            "hw_qemu_guest_agent=yes on the image it boots from)"
        )
        assert snap.calls == 1
        assert not [i for i in c.image.images() if (i.name or "").startswith(f"haven-{p}")]
    finally:
        snapshots.delete_snapshot_set(c, point.snapset)


# -- both labs: a KVM lab guest stands in for each fake-compute server's libvirt domain -------
@pytest.fixture(scope="module")
def kvm_guests() -> Iterator[tuple[str, list[str]]]:
    """Two real guests with real agents at the KVM lab's site a: (URI, domain names)."""
    from haven_lab import kvm

    try:
        lab = kvm.open_lab()
    except kvm.LabMissing as exc:
        lab_unavailable(str(exc))
    kvm.remove_prefixed(lab.a, f"{PREFIX}-")
    specs = [kvm.guest_spec(lab.env, f"{PREFIX}-g{i}") for i in (1, 2)]
    ids = [g.id for g in kvm.boot_guests(lab.a, lab.env, specs)]
    try:
        yield lab.env.a.uri, [s.name for s in specs]
    finally:
        kvm.remove_guests(lab.a, ids)


@pytest.mark.kvm
def test_compute_host_libvirt_rung_with_kvm_lab_guests(
    site: dict[str, Any], kvm_guests: tuple[str, list[str]]
) -> None:
    import libvirt

    from haven.sites.libvirt import agent

    c, p = site["conn"], site["prefix"]
    uri, domains = kvm_guests
    order = [site["servers"]["solo"], site["servers"]["plain"]]
    hosts = {c.compute.get_server(sid).hypervisor_hostname for sid in order}
    config = QuiesceConfig(
        libvirt_uris=dict.fromkeys(hosts, uri), domain_names=dict(zip(order, domains, strict=True))
    )
    vids = [site["vols"][n] for n in ("solo-boot", "solo-data", "plain-boot")]
    lv = libvirt.open(uri)
    doms = [lv.lookupByName(d) for d in domains]
    seen: list[str] = []

    class FreezeCheckingSnapshotter(Snapshotter):
        def __call__(self) -> snapshots.SnapshotSet:
            seen.extend(agent.command(d, "guest-fsfreeze-status", None, 5.0) for d in doms)
            return super().__call__()

    snap = FreezeCheckingSnapshotter(c, f"{p}-k1", vids)
    req = PointRequest(f"{p}-k1", tuple(QuiesceMember(s) for s in order), freeze_timeout_s=5.0)
    try:
        point = take_point(c, req, vids, snap, config)
        try:
            assert point.rung is Rung.LIBVIRT_AGENT
            assert point.consistency is Consistency.APPLICATION and point.reason is None
            assert seen == ["frozen", "frozen"]  # both guests frozen while Cinder snapshotted
            assert [agent.command(d, "guest-fsfreeze-status", None, 5.0) for d in doms] == [
                "thawed",
                "thawed",
            ]
            assert [(s.server_id, s.action, s.ok) for s in point.steps] == [
                (order[0], "freeze", True),
                (order[1], "freeze", True),
                (order[1], "thaw", True),
                (order[0], "thaw", True),
            ]
            assert snap.calls == 1 and len(point.snapset.snaps) == 3
            assert point.timings["snapshot"] >= point.freeze_window_s > 0
            print(
                f"\nlibvirt rung: window {point.freeze_window_s:.2f}s "
                f"(Cinder per-volume snapshots of 3 volumes inside), steps "
                + ", ".join(f"{s.action} {s.duration_s * 1000:.0f} ms" for s in point.steps)
            )
        finally:
            snapshots.delete_snapshot_set(c, point.snapset)
    finally:
        lv.close()
