"""The OpenStack quiesce ladder's decisions and ordering, over small in-memory fakes.

The fakes stand in for the pieces of an openstacksdk connection the ladder reads (servers
with their admin-only attributes, volumes, snapshots, images, hypervisors) and for the
libvirt hosts (guest agents that freeze, thaw, hang or refuse). Nova's createImage on a
boot-from-volume server is modelled on nova/compute/api.py ``snapshot_volume_backed``:
one snapshot per attached volume, and the instance's image metadata (here the boot
volume's) copied into the new image's properties.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from openstack import exceptions as osexc

from haven.domain.points import Consistency
from haven.sites.base import OnQuiesceFailure, PointRequest, QuiesceMember
from haven.sites.errors import GuestAgentError, QuiesceFailed, SiteNotFound, SiteUnavailable
from haven.sites.openstack.quiesce import (
    NOVA_METHOD,
    QuiesceConfig,
    Rung,
    take_point,
)
from haven.sites.openstack.snapshots import SnapshotSet, VolumeSnap

_ids = itertools.count(1)


# -- OpenStack fakes --------------------------------------------------------------------------
@dataclass
class Server:
    id: str
    status: str = "ACTIVE"
    image: Any = ""  # "" : boot from volume (as Nova shows it)
    attached_volumes: list[dict[str, str]] = field(default_factory=list)
    instance_name: str | None = None
    hypervisor_hostname: str | None = None
    compute_host: str | None = None


@dataclass
class Volume:
    id: str
    name: str
    size: int = 1
    volume_image_metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Snap:
    id: str
    volume_id: str
    name: str
    status: str = "creating"


@dataclass
class Image:
    id: str
    name: str
    properties: dict[str, Any]
    os_require_quiesce: Any = None


@dataclass
class Hypervisor:
    name: str
    hypervisor_type: str


class Compute:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.servers: dict[str, Server] = {}
        self.hypervisor_list: list[Hypervisor] = []
        self.hypervisors_forbidden = False
        self.create_image_error: Exception | None = None
        self.created_images: list[str] = []

    def get_server(self, sid: str) -> Server:
        if sid not in self.servers:
            raise osexc.NotFoundException(f"server {sid}")
        return self.servers[sid]

    def hypervisors(self, details: bool = False) -> list[Hypervisor]:
        if self.hypervisors_forbidden:
            raise osexc.ForbiddenException("policy does not allow os_compute_api:os-hypervisors")
        return self.hypervisor_list

    def create_server_image(self, sid: str, name: str, wait: bool = False) -> Image:
        s = self.get_server(sid)
        bs = self.cloud.block_storage
        self.created_images.append(name)
        bdm = []
        for att in s.attached_volumes:
            snap = bs.add_snapshot(att["id"], f"snapshot for {name}")
            bdm.append({"source_type": "snapshot", "snapshot_id": snap.id, "boot_index": 0})
        if self.create_image_error is not None:
            raise self.create_image_error  # after a partial snapshot, as Nova may
        boot = bs.volumes[s.attached_volumes[0]["id"]]
        meta = dict(self.cloud.sysmeta.get(sid, boot.volume_image_metadata))
        img = Image(f"img-{next(_ids)}", name, {"block_device_mapping": json.dumps(bdm)})
        if "os_require_quiesce" in meta:
            img.os_require_quiesce = meta["os_require_quiesce"] in ("yes", "true", "True")
        self.cloud.image.images[img.id] = img
        return img


class BlockStorage:
    def __init__(self) -> None:
        self.volumes: dict[str, Volume] = {}
        self.snaps: dict[str, Snap] = {}
        self.deleted: list[str] = []

    def add_snapshot(self, volume_id: str, name: str) -> Snap:
        s = Snap(f"snap-{next(_ids)}", volume_id, name)
        self.snaps[s.id] = s
        return s

    def get_volume(self, vid: str) -> Volume:
        return self.volumes[vid]

    def get_snapshot(self, sid: str) -> Snap:
        s = self.snaps[sid]
        if s.status == "creating":
            s.status = "available"  # the next poll sees it done
        return s

    def update_snapshot(self, sid: str, name: str) -> None:
        self.snaps[sid].name = name

    def delete_snapshot(self, sid: str, ignore_missing: bool = True) -> None:
        self.snaps.pop(sid, None)
        self.deleted.append(sid)

    def snapshots(self, name: str | None = None) -> list[Snap]:
        return [s for s in self.snaps.values() if name is None or s.name == name]


class ImageService:
    def __init__(self) -> None:
        self.images: dict[str, Image] = {}
        self.deleted: list[str] = []

    def get_image(self, iid: str) -> Image:
        return self.images[iid]

    def delete_image(self, iid: str, ignore_missing: bool = True) -> None:
        self.images.pop(iid, None)
        self.deleted.append(iid)


class Cloud:
    """The parts of an openstacksdk Connection the ladder uses."""

    def __init__(self) -> None:
        self.block_storage = BlockStorage()
        self.image = ImageService()
        self.compute = Compute(self)
        self.sysmeta: dict[str, dict[str, str]] = {}  # server id -> image meta at boot

    def add_server(
        self,
        name: str,
        *,
        volumes: int = 1,
        host: str | None = "compute-1",
        admin: bool = True,
        require_quiesce: bool = False,
        **kw: Any,
    ) -> Server:
        sid = f"srv-{name}"
        atts = []
        for i in range(volumes):
            v = Volume(f"vol-{name}-{i}", f"{name}-{i}")
            if i == 0 and require_quiesce:
                v.volume_image_metadata = {
                    "os_require_quiesce": "yes",
                    "hw_qemu_guest_agent": "yes",
                }
            self.block_storage.volumes[v.id] = v
            atts.append({"id": v.id})
        s = Server(sid, attached_volumes=atts, **kw)
        if admin:
            s.instance_name = f"instance-{name}"
            s.hypervisor_hostname = host
            s.compute_host = host
        self.compute.servers[sid] = s
        return s

    def volume_ids(self, *servers: Server) -> list[str]:
        return [a["id"] for s in servers for a in s.attached_volumes]


# -- libvirt fakes ----------------------------------------------------------------------------
class Guest:
    def __init__(self, hosts: Hosts, name: str) -> None:
        self.hosts, self.name = hosts, name
        self.answers = True
        self.freeze_error: str | None = None
        self.freeze_delay_s = 0.0
        self.prepared = False
        self.prepare_error: Exception | None = None

    def ping(self, timeout_s: float) -> bool:
        return self.answers

    def prepare(self, timeout_s: float, presync: bool) -> None:
        if self.prepare_error is not None:
            raise self.prepare_error
        self.prepared = True

    def freeze(self, timeout_s: float) -> None:
        self.hosts.log.append(("freeze", self.name))
        if self.freeze_delay_s:
            time.sleep(self.freeze_delay_s)
        if self.freeze_error:
            raise GuestAgentError(self.freeze_error)
        self.hosts.frozen.add(self.name)

    def thaw(self, timeout_s: float) -> None:
        self.hosts.log.append(("thaw", self.name))
        self.hosts.frozen.discard(self.name)


class Hosts:
    """libvirt hosts by URI, each with its domains."""

    def __init__(self) -> None:
        self.domains: dict[tuple[str, str], Guest] = {}
        self.log: list[tuple[str, str]] = []
        self.frozen: set[str] = set()
        self.closed = 0
        self.opened = 0
        self.connect_error: Exception | None = None

    def add(self, uri: str, domain: str) -> Guest:
        g = self.domains[(uri, domain)] = Guest(self, domain)
        return g

    def guest(self, uri: str, domain: str) -> Guest:
        if self.connect_error is not None:
            raise self.connect_error
        self.opened += 1
        try:
            return self.domains[(uri, domain)]
        except KeyError:
            raise GuestAgentError(f"no domain {domain}") from None

    def close(self) -> None:
        self.closed += 1

    def factory(self) -> Hosts:
        return self


URI = "qemu+tcp://compute-1/system"
CONFIG = QuiesceConfig(libvirt_uris={"compute-1": URI})


def _request(*servers: Server, **kw: Any) -> PointRequest:
    return PointRequest("p1", tuple(QuiesceMember(s.id) for s in servers), **kw)


class Snapshotter:
    """The caller's snapshot step: records what was frozen while it ran."""

    def __init__(self, cloud: Cloud, volume_ids: list[str], hosts: Hosts | None = None) -> None:
        self.cloud, self.volume_ids, self.hosts = cloud, volume_ids, hosts
        self.calls = 0
        self.frozen_during: set[str] = set()
        self.error: Exception | None = None

    def __call__(self) -> SnapshotSet:
        self.calls += 1
        if self.hosts is not None:
            self.frozen_during = set(self.hosts.frozen)
        if self.error is not None:
            raise self.error
        snaps = tuple(VolumeSnap(v, v, f"grp-{v}", 1) for v in self.volume_ids)
        return SnapshotSet("p1", "group", snaps, "g", "gs", None, time.time(), 0.1)


def _three(cloud: Cloud, hosts: Hosts) -> list[Server]:
    servers = [cloud.add_server(n) for n in ("db", "app", "web")]
    for s in servers:
        hosts.add(URI, str(s.instance_name))
    return servers


# -- rung 1: compute-host libvirt ---------------------------------------------------------------
def test_libvirt_freezes_in_order_snapshots_inside_and_thaws_in_reverse() -> None:
    cloud, hosts = Cloud(), Hosts()
    servers = _three(cloud, hosts)
    snap = Snapshotter(cloud, cloud.volume_ids(*servers), hosts)
    point = take_point(
        cloud, _request(*servers), snap.volume_ids, snap, CONFIG, libvirt=hosts.factory
    )
    names = [str(s.instance_name) for s in servers]
    assert point.consistency is Consistency.APPLICATION and point.reason is None
    assert point.rung is Rung.LIBVIRT_AGENT
    assert hosts.log == [("freeze", n) for n in names] + [("thaw", n) for n in reversed(names)]
    assert snap.calls == 1 and snap.frozen_during == set(names)  # snapshot inside the window
    assert not hosts.frozen and hosts.closed == 1
    assert [(st.server_id, st.action, st.ok) for st in point.steps] == [
        *[(s.id, "freeze", True) for s in servers],
        *[(s.id, "thaw", True) for s in reversed(servers)],
    ]
    assert all(st.duration_s >= 0 for st in point.steps)
    assert point.freeze_window_s > 0 and point.snapset.method == "group"
    assert all(hosts.domains[(URI, n)].prepared for n in names)
    assert not cloud.compute.created_images  # Nova's rung was not needed


def test_snapshot_failure_still_thaws_everything_in_reverse() -> None:
    cloud, hosts = Cloud(), Hosts()
    servers = _three(cloud, hosts)
    snap = Snapshotter(cloud, cloud.volume_ids(*servers), hosts)
    snap.error = SiteUnavailable("cinder down")
    with pytest.raises(SiteUnavailable):
        take_point(cloud, _request(*servers), snap.volume_ids, snap, CONFIG, hosts.factory)
    names = [str(s.instance_name) for s in servers]
    assert hosts.log[3:] == [("thaw", n) for n in reversed(names)]
    assert not hosts.frozen and hosts.closed == 1


def test_freeze_overrunning_its_timeout_is_crash_consistent_with_reason() -> None:
    cloud, hosts = Cloud(), Hosts()
    a, b, c = _three(cloud, hosts)
    hosts.domains[(URI, str(b.instance_name))].freeze_delay_s = 0.05
    snap = Snapshotter(cloud, cloud.volume_ids(a, b, c), hosts)
    point = take_point(
        cloud, _request(a, b, c, freeze_timeout_s=0.01), snap.volume_ids, snap, CONFIG,
        hosts.factory,
    )  # fmt: skip
    assert point.consistency is Consistency.CRASH and point.rung is Rung.LIBVIRT_AGENT
    assert point.reason is not None
    assert "compute-host libvirt" in point.reason and b.id in point.reason
    assert "took" in point.reason
    na, nb = str(a.instance_name), str(b.instance_name)
    # b froze late: thawed at once with a, before the snapshot; c never frozen
    assert hosts.log == [("freeze", na), ("freeze", nb), ("thaw", nb), ("thaw", na)]
    assert snap.calls == 1 and snap.frozen_during == set()
    assert not hosts.frozen


def test_refused_freeze_thaws_the_frozen_then_the_suspect() -> None:
    cloud, hosts = Cloud(), Hosts()
    a, b, c = _three(cloud, hosts)
    hosts.domains[(URI, str(b.instance_name))].freeze_error = "fsfreeze refused"
    snap = Snapshotter(cloud, cloud.volume_ids(a, b, c), hosts)
    point = take_point(cloud, _request(a, b, c), snap.volume_ids, snap, CONFIG, hosts.factory)
    assert point.consistency is Consistency.CRASH
    assert point.reason is not None and "fsfreeze refused" in point.reason
    na, nb = str(a.instance_name), str(b.instance_name)
    assert hosts.log == [("freeze", na), ("freeze", nb), ("thaw", na), ("thaw", nb)]
    assert snap.calls == 1 and not hosts.frozen


def test_fail_policy_on_refused_freeze_takes_no_point() -> None:
    cloud, hosts = Cloud(), Hosts()
    a, b, c = _three(cloud, hosts)
    hosts.domains[(URI, str(c.instance_name))].freeze_error = "agent gone"
    snap = Snapshotter(cloud, cloud.volume_ids(a, b, c), hosts)
    req = _request(a, b, c, on_quiesce_failure=OnQuiesceFailure.FAIL)
    with pytest.raises(QuiesceFailed):
        take_point(cloud, req, snap.volume_ids, snap, CONFIG, hosts.factory)
    assert snap.calls == 0 and not hosts.frozen and hosts.closed == 1


def test_hidden_instance_name_falls_through_with_reason() -> None:
    cloud, hosts = Cloud(), Hosts()
    servers = [cloud.add_server(n, admin=False) for n in ("db", "app")]
    snap = Snapshotter(cloud, cloud.volume_ids(*servers))
    point = take_point(cloud, _request(*servers), snap.volume_ids, snap, CONFIG, hosts.factory)
    assert point.consistency is Consistency.CRASH and point.rung is Rung.NONE
    assert point.reason is not None
    assert "OS-EXT-SRV-ATTR:instance_name not visible" in point.reason
    assert "single-server groups (this group has 2)" in point.reason
    assert snap.calls == 1 and hosts.opened == 0 and not hosts.log
    assert len(point.tried) == 2


def test_domain_name_override_reaches_a_guest_without_admin_instance_name() -> None:
    cloud, hosts = Cloud(), Hosts()
    s = cloud.add_server("db", admin=False, hypervisor_hostname="compute-1")
    hosts.add(URI, "lab-guest")
    config = QuiesceConfig(libvirt_uris={"compute-1": URI}, domain_names={s.id: "lab-guest"})
    snap = Snapshotter(cloud, cloud.volume_ids(s), hosts)
    point = take_point(cloud, _request(s), snap.volume_ids, snap, config, hosts.factory)
    assert point.consistency is Consistency.APPLICATION
    assert hosts.log == [("freeze", "lab-guest"), ("thaw", "lab-guest")]


def test_unmapped_host_and_secret_uri_never_in_reason() -> None:
    cloud, hosts = Cloud(), Hosts()
    s = cloud.add_server("db", host="compute-9")
    snap = Snapshotter(cloud, cloud.volume_ids(s))
    point = take_point(cloud, _request(s), snap.volume_ids, snap, CONFIG, hosts.factory)
    assert point.reason is not None and "no libvirt URI configured for host 'compute-9'" in (
        point.reason
    )
    secret = "qemu+tls://admin:s3cret@compute-9/system"
    hosts.connect_error = SiteUnavailable(f"cannot connect to {secret}")
    config = QuiesceConfig(libvirt_uris={"compute-9": secret})
    point = take_point(cloud, _request(s), snap.volume_ids, snap, config, hosts.factory)
    assert point.reason is not None and "compute-9" in point.reason
    assert "s3cret" not in point.reason and "<uri>" in point.reason
    assert hosts.closed == 1  # the failed attempt closed its connections


def test_silent_agent_falls_through() -> None:
    cloud, hosts = Cloud(), Hosts()
    a, b = (cloud.add_server(n) for n in ("db", "app"))
    hosts.add(URI, str(a.instance_name))
    hosts.add(URI, str(b.instance_name)).answers = False
    snap = Snapshotter(cloud, cloud.volume_ids(a, b), hosts)
    point = take_point(cloud, _request(a, b), snap.volume_ids, snap, CONFIG, hosts.factory)
    assert point.consistency is Consistency.CRASH and point.rung is Rung.NONE
    assert point.reason is not None and "does not answer" in point.reason and b.id in point.reason
    assert not hosts.log and hosts.closed == 1  # nobody frozen when one member is unreachable


def test_unsettable_agent_timeout_falls_through_before_any_freeze() -> None:
    cloud, hosts = Cloud(), Hosts()
    a, b = (cloud.add_server(n) for n in ("db", "app"))
    hosts.add(URI, str(a.instance_name))
    hosts.add(URI, str(b.instance_name)).prepare_error = SiteNotFound("domain vanished")
    snap = Snapshotter(cloud, cloud.volume_ids(a, b), hosts)
    point = take_point(cloud, _request(a, b), snap.volume_ids, snap, CONFIG, hosts.factory)
    assert point.rung is Rung.NONE and point.reason is not None
    assert "domain vanished" in point.reason and not hosts.log and hosts.closed == 1


def test_missing_libvirt_python_falls_through() -> None:
    cloud = Cloud()
    s = cloud.add_server("db")
    snap = Snapshotter(cloud, cloud.volume_ids(s))

    def no_libvirt() -> Hosts:
        raise ModuleNotFoundError("No module named 'libvirt'", name="libvirt")

    point = take_point(cloud, _request(s), snap.volume_ids, snap, CONFIG, no_libvirt)
    assert point.reason is not None and "libvirt-python is not installed (libvirt)" in point.reason


def test_unconfigured_libvirt_says_so() -> None:
    cloud = Cloud()
    s = cloud.add_server("db")
    snap = Snapshotter(cloud, cloud.volume_ids(s))
    point = take_point(cloud, _request(s), snap.volume_ids, snap, QuiesceConfig())
    assert point.reason is not None
    assert point.reason.startswith(
        "crash-consistent: compute-host libvirt: no libvirt URI configured for any compute host"
    )


def test_no_member_to_quiesce_is_crash_without_trying() -> None:
    cloud, hosts = Cloud(), Hosts()
    s = cloud.add_server("db")
    hosts.add(URI, str(s.instance_name))
    snap = Snapshotter(cloud, cloud.volume_ids(s))
    req = PointRequest("p1", (QuiesceMember(s.id, quiesce=False),))
    point = take_point(cloud, req, snap.volume_ids, snap, CONFIG, hosts.factory)
    assert point.consistency is Consistency.CRASH
    assert point.reason == "crash-consistent: no member asks for quiesce"
    assert hosts.opened == 0 and snap.calls == 1


# -- rung 2: Nova image snapshot ---------------------------------------------------------------
def _nova_case(htype: str = "QEMU", **kw: Any) -> tuple[Cloud, Server, Snapshotter]:
    cloud = Cloud()
    s = cloud.add_server("db", volumes=2, **{"require_quiesce": True, **kw})
    cloud.compute.hypervisor_list = [Hypervisor("compute-1", htype)]
    return cloud, s, Snapshotter(cloud, cloud.volume_ids(s))


def test_nova_snapshot_with_require_quiesce_is_application_consistent() -> None:
    cloud, s, snap = _nova_case()
    wanted = snap.volume_ids[:1]  # the member protects one of its two volumes
    point = take_point(cloud, _request(s), wanted, snap, QuiesceConfig())
    assert point.consistency is Consistency.APPLICATION and point.reason is None
    assert point.rung is Rung.NOVA_IMAGE and snap.calls == 0
    assert point.snapset.method == NOVA_METHOD
    assert [v.volume_id for v in point.snapset.snaps] == wanted
    kept = cloud.block_storage.snaps[point.snapset.snaps[0].snapshot_id]
    assert kept.name == "haven-p1-db-0" and kept.status == "available"
    assert len(cloud.block_storage.snaps) == 1  # the unwanted volume's snapshot is gone
    assert not cloud.image.images  # the property-only image is deleted
    assert [st.action for st in point.steps] == ["nova-quiesce"]
    assert point.tried and point.tried[0].startswith("compute-host libvirt:")


def test_nova_on_fake_hypervisor_is_crash_with_reason() -> None:
    cloud, s, snap = _nova_case(htype="fake")
    point = take_point(cloud, _request(s), snap.volume_ids, snap, QuiesceConfig())
    assert point.consistency is Consistency.CRASH and point.rung is Rung.NOVA_IMAGE
    assert point.reason is not None
    assert "hypervisor type 'fake' acknowledges quiesce without freezing" in point.reason
    assert snap.calls == 0 and len(point.snapset.snaps) == 2  # Nova's snapshots are the point
    assert set(cloud.block_storage.snaps) == {v.snapshot_id for v in point.snapset.snaps}


def test_nova_without_require_quiesce_is_not_tried() -> None:
    cloud, s, snap = _nova_case(require_quiesce=False)
    point = take_point(cloud, _request(s), snap.volume_ids, snap, QuiesceConfig())
    assert point.consistency is Consistency.CRASH and point.rung is Rung.NONE
    assert point.reason is not None and "lacks os_require_quiesce=yes" in point.reason
    assert "skip a failed or unsupported quiesce silently" in point.reason
    assert not cloud.compute.created_images and snap.calls == 1


def test_nova_image_props_decide_when_boot_metadata_changed_since_boot() -> None:
    cloud, s, snap = _nova_case()
    cloud.sysmeta[s.id] = {}  # booted before the volume's metadata was set
    point = take_point(cloud, _request(s), snap.volume_ids, snap, QuiesceConfig())
    assert point.consistency is Consistency.CRASH and point.rung is Rung.NOVA_IMAGE
    assert point.reason is not None and "may have skipped the quiesce silently" in point.reason


def test_nova_refusing_createimage_falls_to_crash_and_cleans_up() -> None:
    cloud, s, snap = _nova_case()
    cloud.compute.create_image_error = osexc.BadRequestException(
        "Quiescing is not supported in instance"
    )
    point = take_point(cloud, _request(s), snap.volume_ids, snap, QuiesceConfig())
    assert point.consistency is Consistency.CRASH and point.rung is Rung.NONE
    assert point.reason is not None
    assert f"createImage of {s.id} failed: Quiescing is not supported" in point.reason
    assert snap.calls == 1 and not cloud.block_storage.snaps  # partial snapshots removed


def test_nova_hidden_hypervisor_type_trusts_nova() -> None:
    cloud, s, snap = _nova_case(htype="fake")
    cloud.compute.hypervisors_forbidden = True
    point = take_point(cloud, _request(s), snap.volume_ids, snap, QuiesceConfig())
    assert point.consistency is Consistency.APPLICATION and point.rung is Rung.NOVA_IMAGE


def test_nova_fail_policy_deletes_its_snapshots() -> None:
    cloud, s, snap = _nova_case(htype="fake")
    req = _request(s, on_quiesce_failure=OnQuiesceFailure.FAIL)
    with pytest.raises(QuiesceFailed, match="acknowledges quiesce"):
        take_point(cloud, req, snap.volume_ids, snap, QuiesceConfig())
    assert not cloud.block_storage.snaps and not cloud.image.images and snap.calls == 0


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"status": "SHUTOFF"}, "is SHUTOFF, Nova quiesces only ACTIVE servers"),
        ({"image": {"id": "cirros"}}, "boots from an image"),
    ],
)
def test_nova_preconditions(kw: dict[str, Any], why: str) -> None:
    cloud, s, snap = _nova_case(**kw)
    point = take_point(cloud, _request(s), snap.volume_ids, snap, QuiesceConfig())
    assert point.rung is Rung.NONE and point.reason is not None and why in point.reason
    assert not cloud.compute.created_images


def test_nova_disabled_and_fail_policy_raise_before_any_snapshot() -> None:
    cloud, s, snap = _nova_case()
    config = QuiesceConfig(nova_image_snapshot=False)
    req = _request(s, on_quiesce_failure=OnQuiesceFailure.FAIL)
    with pytest.raises(QuiesceFailed, match="Nova image snapshot: disabled by configuration"):
        take_point(cloud, req, snap.volume_ids, snap, config)
    assert snap.calls == 0 and not cloud.compute.created_images


def test_libvirt_rung_wins_over_nova_for_a_single_server() -> None:
    cloud, s, snap = _nova_case()
    hosts = Hosts()
    hosts.add(URI, str(s.instance_name))
    point = take_point(cloud, _request(s), snap.volume_ids, snap, CONFIG, hosts.factory)
    assert point.rung is Rung.LIBVIRT_AGENT and point.consistency is Consistency.APPLICATION
    assert not cloud.compute.created_images
