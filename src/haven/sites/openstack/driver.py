"""The OpenStack site driver: one clouds.yaml cloud + region, through openstacksdk.

Implements the SiteDriver protocol (haven.sites.base) where OpenStack's APIs allow it, and
the engine's roles (haven.engine.ports): NetworkCreation (test bubbles), NativeBackups
(Cinder backup), ProjectInfrastructure (capture: ``project``; survey, ensure, remove:
``project``, ``infra``), ProjectServers and ServerAddresses (``placement``).

Points are Cinder group snapshots (per-volume fallback) taken through the quiesce ladder
(``quiesce``). Nova's API cannot reach a guest agent: with ``compute_hosts`` (Nova host
name -> libvirt URI, from the site's spec) the agent is reached through the compute host's
libvirt (``guests``) for the ordered freeze, agent and command gates, hooks and exec.

Volume data moves one of two ways, chosen per policy: Cinder backup
(haven.sites.openstack.nativecopy), or Haven's own repository through
``open_point_disk``/``open_volume_writer``, which move the data through Glance images
(haven.sites.openstack.transfer: snapshot -> volume -> image -> local sparse file, and
back by re-imaging the target volume). The per-disk figures of the last transfers are kept
in ``transfers`` (key ``<point_id>/<server_id>/<target>`` for reads, ``volume:<id>`` for
writes) and are also on the reader/writer objects (``figures``).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from openstack import exceptions as osexc

from haven.domain.inventory import (
    DiskRole,
    DiskSpec,
    NetworkInfo,
    NicSpec,
    PowerState,
    ServerInfo,
    ServerSpec,
    VolumeInfo,
)
from haven.domain.project import (
    Created,
    FloatingIpRequest,
    FloatingIpResult,
    InfraItem,
    LedgerKind,
    PlacedServer,
    PlacedServerRequest,
    ProjectSnapshot,
    SiteSurvey,
    SurveyRequest,
)
from haven.sites.base import (
    AgentGate,
    Capability,
    ExecResult,
    NativeCopy,
    PointDisk,
    PointDiskReader,
    PointHandle,
    PointRequest,
    ReadinessGate,
    ReadinessResult,
    StopOutcome,
    TcpGate,
    VolumeWriter,
)
from haven.sites.errors import SiteConflict, SiteError, SiteInputError, SiteNotFound
from haven.sites.openstack import (
    guests,
    infra,
    nativecopy,
    project,
    qemuimg,
    quiesce,
    snapshots,
    transfer,
)
from haven.sites.openstack import placement as placing
from haven.sites.openstack.connection import SiteRef, connect, wait_status
from haven.sites.openstack.errors import OpenStackSiteError

GiB = 1024**3
_POWER = {
    "ACTIVE": PowerState.RUNNING,
    "PAUSED": PowerState.PAUSED,
    "SHUTOFF": PowerState.SHUTOFF,
    # shelved: stopped with its volumes released for writing (see open_volume_writer)
    "SHELVED": PowerState.SHUTOFF,
    "SHELVED_OFFLOADED": PowerState.SHUTOFF,
    "SUSPENDED": PowerState.PAUSED,
    "ERROR": PowerState.CRASHED,
}


class OpenStackDriver:
    def __init__(
        self,
        name: str,
        cloud: str,
        region: str,
        config_file: str | None = None,
        group_name: str | None = None,
        transfer_dir: str | None = None,
        image_format: str = "auto",
        quiesce_config: quiesce.QuiesceConfig | None = None,
        compute_hosts: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        hosts = dict(compute_hosts or {})
        self.quiesce_config = quiesce_config or quiesce.QuiesceConfig(libvirt_uris=hosts)
        self.guests = guests.ComputeHosts(hosts)
        self.ref = SiteRef(cloud, region, config_file)
        self.group_name = group_name or f"haven-{name}"
        self.transfer_dir = transfer_dir  # local temp files of image transfers; None: $TMPDIR
        # how volume data crosses Glance: "raw" (the whole volume, no local tooling),
        # "qcow2" (allocated data only, needs qemu-img here) or "auto" (qcow2 when qemu-img
        # is installed). Content is verified the same way either way (transfer module).
        if image_format == "auto":
            image_format = "qcow2" if qemuimg.available() else "raw"
        try:
            self.image_format = transfer.ImageFormat(image_format)
        except ValueError as exc:
            raise SiteInputError(
                "image_format", f"{image_format!r} is not one of: auto, raw, qcow2"
            ) from exc
        self._conn: Any = None
        self._points: dict[str, snapshots.SnapshotSet] = {}
        # point id -> (server id, disk target) -> volume id, as captured by create_point
        self._point_volumes: dict[str, dict[tuple[str, str], str]] = {}
        self.transfers: dict[str, transfer.TransferFigures] = {}

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = connect(self.ref)
        return self._conn

    def capabilities(self) -> Capability:
        caps = (
            Capability.GROUP_SNAPSHOT
            | Capability.VOLUME_CREATION
            | Capability.SERVER_DEFINITION
            | Capability.NETWORK_CREATION
            | Capability.READINESS_TCP
        )
        if self.guests.configured:  # the compute hosts' libvirt reaches the guest agents
            caps |= Capability.GUEST_QUIESCE | Capability.GUEST_EXEC | Capability.READINESS_AGENT
        return caps

    def close(self) -> None:
        self.guests.close()

    # -- inventory -------------------------------------------------------------------------
    def list_servers(self) -> list[ServerInfo]:
        return [self._info(s) for s in self.conn.compute.servers(details=True)]

    def get_server(self, server_id: str) -> ServerInfo:
        return self._info(self._server(server_id))

    def capture_server(self, server_id: str) -> ServerSpec:
        return self._spec(self._server(server_id))

    def list_networks(self) -> list[NetworkInfo]:
        return [
            NetworkInfo(n.id, n.name, n.status == "ACTIVE") for n in self.conn.network.networks()
        ]

    # -- NetworkCreation: isolated networks the engine creates for drills ----------------------
    def create_network(self, name: str, cidr: str) -> NetworkInfo:
        """An isolated network with one subnet of ``cidr`` (no router, no gateway), so
        servers booted on it get addresses but reach nothing outside the bubble."""
        net = self.conn.network
        if project.find_network(self.conn, name) is not None:
            raise SiteConflict(f"{self.name}: network {name} exists")
        n = net.create_network(name=name, description="Haven test bubble")
        try:
            net.create_subnet(network_id=n.id, name=f"{name}-subnet", ip_version=4,
                              cidr=cidr, gateway_ip=None)  # fmt: skip
        except Exception:
            net.delete_network(n, ignore_missing=True)  # no half-made bubble
            raise
        return NetworkInfo(n.id, n.name, True)

    def delete_network(self, ref: str) -> None:
        """Remove a network ``create_network`` made (by id): leftover ports, subnets, it."""
        if self.conn.network.find_network(ref) is None:
            raise SiteNotFound(f"{self.name}: network {ref} not found")
        infra.delete_network(self.conn, ref)

    # -- ProjectInfrastructure, ProjectServers, ServerAddresses --------------------------------
    def capture_project(self, servers: Mapping[str, str]) -> ProjectSnapshot:
        return project.capture(self.conn, servers)

    def survey(self, request: SurveyRequest) -> SiteSurvey:
        return project.survey(self.conn, request)

    def ensure(self, item: InfraItem) -> tuple[Created, ...]:
        return infra.ensure(self.conn, item)

    def remove(self, kind: LedgerKind, ref: str) -> None:
        infra.remove(self.conn, kind, ref)

    def define_placed_server(
        self,
        spec: ServerSpec,
        *,
        name: str,
        placement: PlacedServerRequest,
        volumes: dict[str, VolumeInfo],
    ) -> PlacedServer:
        return placing.define(self.conn, spec, name, placement, volumes)

    def create_typed_volume(self, name: str, size_bytes: int, volume_type: str) -> VolumeInfo:
        return placing.create_typed_volume(self.conn, name, size_bytes, volume_type)

    def attach_floating_ip(self, server_id: str, request: FloatingIpRequest) -> FloatingIpResult:
        return placing.attach_floating_ip(self.conn, server_id, request)

    def server_addresses(self, server_id: str) -> tuple[str, ...]:
        return placing.server_addresses(self.conn, server_id)

    def list_volumes(self) -> list[VolumeInfo]:
        return [
            VolumeInfo(v.id, v.name or v.id, v.size * GiB, "raw")
            for v in self.conn.block_storage.volumes()
        ]

    def _server(self, server_id: str) -> Any:
        """By id, else by name (the engine names group members by server name, as the
        libvirt driver's domains are); a name held by several servers is an error."""
        try:
            return self.conn.compute.get_server(server_id)
        except osexc.NotFoundException:
            pass
        found = list(self.conn.compute.servers(details=True, name=f"^{server_id}$"))
        found = [s for s in found if s.name == server_id]
        if len(found) > 1:
            raise SiteInputError(
                "server", f"{self.name}: {len(found)} servers are named {server_id}; use ids"
            )
        if not found:
            raise SiteNotFound(f"{self.name}: server {server_id} not found")
        return found[0]

    def _info(self, s: Any) -> ServerInfo:
        return ServerInfo(s.id, s.name, _POWER.get(s.status, PowerState.UNKNOWN), self._spec(s))

    def _spec(self, s: Any) -> ServerSpec:
        disks = []
        for att in self.conn.compute.volume_attachments(s):
            v = self.conn.block_storage.get_volume(att.volume_id)
            target = (att.device or "").rsplit("/", 1)[-1] or v.id
            role = DiskRole.BOOT if att.device == s.root_device_name else DiskRole.DATA
            disks.append(DiskSpec(target, v.size * GiB, role, "raw", "virtio", v.id))
        disks.sort(key=lambda d: (d.role != DiskRole.BOOT, d.target))
        nics = []
        for port in self.conn.network.ports(device_id=s.id):
            net = self.conn.network.get_network(port.network_id)
            nics.append(NicSpec(net.name, port.mac_address))
        return ServerSpec(
            s.name,
            s.flavor.vcpus,
            s.flavor.ram,
            tuple(disks),
            tuple(nics),
            guest_agent=False,
            source_id=s.id,
        )

    # -- guest agent: through the compute host's libvirt (``compute_hosts``) -----------------
    def agent_ping(self, server_id: str, timeout_s: float = 2.0) -> bool:
        return self.guests.agent_ping(self._server(server_id), timeout_s)

    def guest_exec(
        self,
        server_id: str,
        argv: Sequence[str],
        timeout_s: float = 30.0,
        stdin: bytes | None = None,
    ) -> ExecResult:
        return self.guests.guest_exec(self._server(server_id), argv, timeout_s, stdin)

    # -- points ----------------------------------------------------------------------------
    def create_point(self, request: PointRequest) -> PointHandle:
        volume_ids: list[str] = []
        by_disk: dict[tuple[str, str], str] = {}
        disks: list[PointDisk] = []
        for m in request.members:
            spec = self.capture_server(m.server_id)
            for d in spec.disks:
                if m.disks is None or d.target in m.disks:
                    if d.source is None:
                        raise SiteInputError(
                            f"members[{m.server_id}]", f"disk {d.target} has no volume"
                        )
                    volume_ids.append(d.source)
                    by_disk[(m.server_id, d.target)] = d.source
                    disks.append(PointDisk(m.server_id, d.target, d.size_bytes, False))
        # one Cinder group per protection group: a group snapshot covers every volume of
        # its Cinder group, so groups shared between applications would snapshot strangers
        group_name = f"haven-{request.group}" if request.group else self.group_name
        # the consistency ladder (haven.sites.openstack.quiesce): compute-host libvirt
        # freeze around the snapshot, else a Nova image snapshot of a single server, else
        # crash-consistent with the reason
        qp = quiesce.take_point(
            self.conn,
            request,
            volume_ids,
            lambda: snapshots.snapshot_volumes(self.conn, request.point_id, volume_ids, group_name),
            self.quiesce_config,
        )
        snapset = qp.snapset
        for vid in volume_ids:  # see transfer.SNAPSHOTTED: never re-imaged in place again
            self.conn.block_storage.set_volume_metadata(vid, **{transfer.SNAPSHOTTED: "true"})
        self._points[request.point_id] = snapset
        self._point_volumes[request.point_id] = by_disk
        reason = qp.reason
        if reason and snapset.reason:
            reason = f"{reason}; {snapset.reason}"
        return PointHandle(
            request.point_id,
            self.name,
            request.parent_point_id,
            qp.consistency,
            tuple(disks),
            qp.freeze_window_s,
            reason,
            qp.steps,
            qp.taken_at,
        )

    def snapshot_set(self, point_id: str) -> snapshots.SnapshotSet:
        """The point's snapshots: remembered by this process, else found in Cinder by the
        names create_point gave them (a process that resumes another's work)."""
        found = self._points.get(point_id) or snapshots.find_snapshot_set(self.conn, point_id)
        if found is None:
            raise SiteNotFound(f"{self.name}: point {point_id} unknown")
        self._points[point_id] = found
        return found

    def open_point_disk(
        self, point: PointHandle, disk: PointDisk
    ) -> AbstractContextManager[PointDiskReader]:
        """The disk's snapshot of this point, through a temporary volume and a Glance image
        downloaded into a local sparse file (haven.sites.openstack.transfer). The cloud work
        (minutes for large volumes) happens on entering the context; everything temporary is
        gone when it exits. No changed-block tracking: ``changed_extents()`` is None."""
        snap = self._disk_snapshot(point, disk)
        figures = transfer.TransferFigures()
        self.transfers[f"{point.point_id}/{disk.server_id}/{disk.target}"] = figures
        return transfer.read_snapshot(
            self.conn,
            snap.snapshot_id,
            snap.size_gib,
            f"{point.point_id}-{disk.target}",
            directory=self.transfer_dir,
            figures=figures,
            image_format=self.image_format,
        )

    def _disk_snapshot(self, point: PointHandle, disk: PointDisk) -> snapshots.VolumeSnap:
        snapset = self.snapshot_set(point.point_id)
        volume_id = self._point_volumes.get(point.point_id, {}).get((disk.server_id, disk.target))
        if volume_id is None:  # another process took the point: the disk's volume now
            with contextlib.suppress(SiteNotFound, KeyError):
                volume_id = self.capture_server(disk.server_id).disk(disk.target).source
        try:
            return snapset.for_volume(volume_id or "")
        except KeyError:
            raise SiteNotFound(
                f"{self.name}: point {point.point_id} has no disk {disk.target} "
                f"of server {disk.server_id}"
            ) from None

    # -- data path cinder-backup (haven.sites.base.NativeBackups) ---------------------------
    def backup_point_disk(
        self, point: PointHandle, disk: PointDisk, parent_ref: str | None
    ) -> NativeCopy:
        """A Cinder backup of the disk's snapshot into the backup store, its chain's
        records in the returned ref (haven.sites.openstack.nativecopy)."""
        ref, size = nativecopy.backup_disk(
            self.conn, point.point_id, self._disk_snapshot(point, disk), parent_ref
        )
        return NativeCopy(ref, bytes_read=size)

    def restore_native(self, ref: str, volume: VolumeInfo) -> int:
        nativecopy.restore_disk(self.conn, ref, volume.id)
        return volume.size_bytes

    def release_point(self, point: PointHandle) -> None:
        """Delete the point's snapshots: its disks have been read (the engine releases a
        point after backing up every disk) and there is no CBT checkpoint to keep. A
        snapshot left in place would also break the next point on NFS-like drivers: the
        next snapshot becomes a qcow2 layer with a backing file, which Cinder's image safety
        check refuses to copy into a volume. Releasing an unknown point is a no-op."""
        self.delete_point(point.point_id)

    def delete_point(self, point_id: str) -> None:
        snapset = self._points.pop(point_id, None) or snapshots.find_snapshot_set(
            self.conn, point_id
        )
        self._point_volumes.pop(point_id, None)
        if snapset is not None:
            snapshots.delete_snapshot_set(self.conn, snapset)

    # -- volumes and servers (recovery site) ------------------------------------------------
    def create_volume(self, name: str, size_bytes: int) -> VolumeInfo:
        gib = max(1, -(-size_bytes // GiB))
        bs = self.conn.block_storage
        v = bs.create_volume(name=name, size=gib)
        v = wait_status(f"volume {name}", lambda: bs.get_volume(v.id), {"available"})
        return VolumeInfo(v.id, name, gib * GiB, "raw")

    def open_volume_writer(self, volume: VolumeInfo) -> AbstractContextManager[VolumeWriter]:
        """Writes collect in a local sparse file; on a clean exit it becomes a raw Glance
        image that re-images the volume (same id), then the image is deleted. The whole
        content is replaced, so the writer is ``fresh``. The volume must be available
        (detached) or attached to a stopped server, which is then shelved before the first
        write (Cinder re-images a volume only when it is available, or reserved by a
        shelved-offloaded server) and unshelved by ``start_server``. It must have no
        snapshots. Reading before writing loads the volume's current content (the engine
        reads a stopped server's volume this way)."""
        try:
            v = self.conn.block_storage.get_volume(volume.id)
        except osexc.NotFoundException as exc:
            raise SiteNotFound(
                f"{self.name}: volume {volume.name} ({volume.id}) not found"
            ) from exc
        figures = transfer.TransferFigures()
        self.transfers[f"volume:{volume.id}"] = figures
        return transfer.write_volume(
            self.conn,
            volume.id,
            int(v.size) * GiB,
            volume.name,
            directory=self.transfer_dir,
            figures=figures,
            image_format=self.image_format,
            make_writable=lambda: self._release_volume(volume),
        )

    def _release_volume(self, volume: VolumeInfo) -> None:
        """Shelve the stopped servers holding ``volume`` (failback writes into the volumes
        of the home site's stopped servers); a running server's volume is refused."""
        v = self.conn.block_storage.get_volume(volume.id)
        if v.status != "in-use":
            return
        cmp = self.conn.compute
        for att in v.attachments or []:
            s = cmp.get_server(att["server_id"])
            if s.status == "SHELVED_OFFLOADED":
                continue
            if s.status != "SHUTOFF":
                raise SiteConflict(
                    f"{self.name}: volume {volume.name} is attached to server {s.name}, "
                    f"which is {s.status}: stop it before restoring into the volume"
                )
            cmp.shelve_server(s)
            wait_status(f"server {s.name} shelve", lambda s=s: cmp.get_server(s.id),
                        {"SHELVED_OFFLOADED"}, timeout=600)  # fmt: skip

    def delete_volume(self, volume: VolumeInfo) -> None:
        bs = self.conn.block_storage
        v = bs.find_volume(volume.id)
        if v is not None:
            bs.delete_volume(v)
            bs.wait_for_delete(v, wait=300)

    def define_server(
        self,
        spec: ServerSpec,
        *,
        name: str,
        network_map: dict[str, str],
        volumes: dict[str, VolumeInfo],
    ) -> str:
        """Create the server from its volumes and leave it SHUTOFF (Nova boots on create)."""
        cmp, net = self.conn.compute, self.conn.network
        flavor = self._flavor_for(spec)
        bdm = []
        for d in spec.disks:
            if d.target not in volumes:
                raise SiteInputError(f"volumes.{d.target}", "no volume for this disk")
            boot = d.role == DiskRole.BOOT
            if boot:
                self.conn.block_storage.set_volume_bootable_status(volumes[d.target].id, True)
            bdm.append(
                {
                    "uuid": volumes[d.target].id,
                    "source_type": "volume",
                    "destination_type": "volume",
                    "delete_on_termination": False,
                    "boot_index": 0 if boot else -1,
                }
            )
        nets = []
        for nic in spec.nics:
            # every NIC's network must be mapped (the engine passes identity mappings
            # explicitly), as for the other drivers: no silent fallback to the same name
            target = network_map.get(nic.network)
            if target is None:
                raise SiteInputError(f"network_map.{nic.network}", "no target network for this NIC")
            n = net.find_network(target)
            if n is None:
                raise SiteNotFound(f"{self.name}: network {target} not found")
            nets.append({"uuid": n.id})
        s = cmp.create_server(
            name=name, flavor_id=flavor.id, networks=nets or "none", block_device_mapping=bdm
        )
        s = wait_status(f"server {name}", lambda: cmp.get_server(s.id), {"ACTIVE"})
        cmp.stop_server(s)
        wait_status(f"server {name} stop", lambda: cmp.get_server(s.id), {"SHUTOFF"})
        return str(s.id)

    def _flavor_for(self, spec: ServerSpec) -> Any:
        best = None
        for f in self.conn.compute.flavors():
            if (
                f.vcpus >= spec.vcpus
                and f.ram >= spec.memory_mib
                and (best is None or (f.vcpus, f.ram) < (best.vcpus, best.ram))
            ):
                best = f
        if best is None:
            raise OpenStackSiteError(
                f"{self.name}: no flavor with {spec.vcpus} vCPU, {spec.memory_mib} MiB"
            )
        return best

    def start_server(self, server_id: str) -> None:
        s = self._server(server_id)
        if s.status in ("SHELVED", "SHELVED_OFFLOADED"):  # see _release_volume
            self.conn.compute.unshelve_server(s)
            wait_status(
                f"server {s.name} unshelve", lambda: self.conn.compute.get_server(s.id), {"ACTIVE"}
            )
        elif s.status != "ACTIVE":
            self.conn.compute.start_server(s)
            wait_status(
                f"server {s.name} start", lambda: self.conn.compute.get_server(s.id), {"ACTIVE"}
            )

    def stop_server(self, server_id: str, timeout_s: float = 30.0) -> StopOutcome:
        """Nova's stop: a clean shutdown, then a power-off after Nova's own
        shutdown_timeout; the API does not say which one happened (UNREPORTED)."""
        s = self._server(server_id)
        if s.status in ("SHUTOFF", "SHELVED", "SHELVED_OFFLOADED"):
            return StopOutcome.ALREADY_STOPPED
        self.conn.compute.stop_server(s)
        wait_status(
            f"server {s.name} stop",
            lambda: self.conn.compute.get_server(s.id),
            {"SHUTOFF"},
            timeout=max(timeout_s, 60),
        )
        return StopOutcome.UNREPORTED

    def destroy_server(self, server_id: str) -> None:
        self.stop_server(server_id)

    def undefine_server(self, server_id: str) -> None:
        """Delete the server and keep its volumes (as libvirt's undefine keeps disks):
        attachments marked delete-on-termination are unmarked first (Nova 2.85). Ports
        made for it (Nova keeps ports it did not create) go too: their fixed IPs are free
        for the server that replaces it."""
        s = self._server(server_id)
        cmp = self.conn.compute
        ports = [p.id for p in self.conn.network.ports(device_id=s.id)]
        for att in cmp.volume_attachments(s):
            if getattr(att, "delete_on_termination", False):
                resp = cmp.put(
                    f"/servers/{s.id}/os-volume_attachments/{att.volume_id}",
                    json={"volumeAttachment": {"volumeId": att.volume_id,
                                               "delete_on_termination": False}},
                    microversion="2.85",
                )  # fmt: skip
                if resp.status_code >= 400:
                    raise OpenStackSiteError(
                        f"{self.name}: cannot keep volume {att.volume_id} of server {s.name}: "
                        f"HTTP {resp.status_code}; not deleting the server"
                    )
        cmp.delete_server(s)
        cmp.wait_for_delete(s, wait=300)
        for pid in ports:  # what is left of them: the unbound ones Nova did not create
            self.conn.network.delete_port(pid, ignore_missing=True)

    def wait_ready(
        self, server_id: str, gates: Sequence[ReadinessGate], timeout_s: float
    ) -> ReadinessResult:
        """The server is ACTIVE (a precondition, not a gate), then each gate in order.
        ``passed`` names the gates that passed by type, as the other drivers do."""
        t0 = time.monotonic()
        passed: list[str] = []
        try:
            wait_status(
                "server active",
                lambda: self.conn.compute.get_server(server_id),
                {"ACTIVE"},
                timeout=timeout_s,
            )
        except OpenStackSiteError as exc:
            return ReadinessResult(False, time.monotonic() - t0, str(exc))
        deadline = t0 + timeout_s
        for g in gates:
            kind = type(g).__name__
            ok, why = self._gate(server_id, g, deadline)
            if not ok:
                return ReadinessResult(False, time.monotonic() - t0, f"{kind}: {why}",
                                       tuple(passed))  # fmt: skip
            passed.append(kind)
        return ReadinessResult(True, time.monotonic() - t0, "", tuple(passed))

    def _gate(self, server_id: str, g: ReadinessGate, deadline: float) -> tuple[bool, str]:
        """TCP from Haven's host; agent and command through the compute host's libvirt,
        retried until ``deadline`` (a guest boots, its agent starts)."""
        if isinstance(g, TcpGate):
            return _tcp(g, deadline), f"{g.host}:{g.port} closed"
        if not self.guests.configured:
            return False, "no guest agent access (the site's compute_hosts is not set)"
        server = self._server(server_id)
        why = "agent silent"
        while True:
            left = max(1.0, deadline - time.monotonic())
            try:
                if isinstance(g, AgentGate):
                    if self.guests.agent_ping(server, min(left, 2.0)):
                        return True, ""
                else:
                    r = self.guests.guest_exec(server, g.argv, min(left, 30.0), None)
                    if r.exit_code == 0:
                        return True, ""
                    why = f"{' '.join(g.argv)} exited {r.exit_code}"
            except (SiteError, SiteNotFound) as exc:
                why = str(exc)
            if time.monotonic() >= deadline:
                return False, why
            time.sleep(1.0)


def _tcp(g: TcpGate, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((g.host, g.port), timeout=2):
                return True
        except OSError:
            time.sleep(1)
    return False
