"""LibvirtDriver: the SiteDriver for one libvirt host (one "site" of the KVM lab).

Server ids are domain UUIDs (names are accepted too). Volumes live in one storage pool
(default "haven"). Points are pull-mode backup jobs kept open until ``release_point``
(see backup.py); their checkpoints stay, so the next point can be incremental.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import libvirt

from haven.domain.inventory import (
    NetworkInfo,
    PowerState,
    ServerInfo,
    ServerSpec,
    VolumeInfo,
)
from haven.sites.base import (
    AgentGate,
    Capability,
    CommandGate,
    ExecResult,
    PointDisk,
    PointHandle,
    PointRequest,
    QuiesceMember,
    ReadinessGate,
    ReadinessResult,
    StopOutcome,
    TcpGate,
)
from haven.sites.errors import (
    GuestAgentError,
    SiteConflict,
    SiteError,
    SiteInputError,
    SiteNotFound,
)
from haven.sites.libvirt import agent, backup, domxml, points, volumes
from haven.sites.libvirt.conn import connect, libvirt_errors

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTOFF,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
}
_POLL_S = 0.05  # readiness/poweroff polling: each poll asks the guest or libvirt, not a timer


@dataclass(frozen=True, slots=True)
class LibvirtSiteConfig:
    """One libvirt site. Paths are on the libvirt host; they come from the site's spec."""

    name: str
    uri: str
    scratch_dir: str  # fleecing overlays of open points (the spec's ``scratch_dir``)
    pool: str = "haven"
    socket_dir: str = "/tmp/haven-nbd"  # short paths: unix sockets are limited to 107 bytes
    console_dir: str | None = None  # if set, a serial console log per defined domain
    presync: bool = True  # guest `sync` before the freeze window (shortens fsfreeze)


class LibvirtDriver:
    def __init__(self, config: LibvirtSiteConfig) -> None:
        self.name = config.name
        self._cfg = config
        self._conn = connect(config.uri)
        self._points: dict[str, points.OpenPoint] = {}
        self._fresh: set[str] = set()  # volumes created here and never opened for writing
        os.makedirs(config.scratch_dir, exist_ok=True)
        os.makedirs(config.socket_dir, exist_ok=True)

    def close(self) -> None:
        for pid in list(self._points):
            self._end_jobs(pid)
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.close()

    def capabilities(self) -> Capability:
        return (
            Capability.GUEST_QUIESCE
            | Capability.GUEST_EXEC
            | Capability.GROUP_SNAPSHOT
            | Capability.CHANGED_BLOCK_TRACKING
            | Capability.VOLUME_CREATION
            | Capability.VOLUME_OVERWRITE
            | Capability.SERVER_DEFINITION
            | Capability.READINESS_AGENT
            | Capability.READINESS_TCP
            | Capability.STANDALONE_VOLUMES
        )

    # -- inventory ---------------------------------------------------------------------------
    def _dom(self, server_id: str) -> libvirt.virDomain:
        with libvirt_errors(f"server {server_id}"):
            try:
                return self._conn.lookupByUUIDString(server_id)
            except libvirt.libvirtError:
                return self._conn.lookupByName(server_id)

    def capture_server(self, server_id: str) -> ServerSpec:
        dom = self._dom(server_id)
        with libvirt_errors(f"capture {dom.name()}"):
            return domxml.spec_from_xml(dom.XMLDesc(0), lambda t: int(dom.blockInfo(t)[0]))

    def _info(self, dom: libvirt.virDomain) -> ServerInfo:
        state = _STATES.get(dom.state()[0], PowerState.UNKNOWN)
        spec = domxml.spec_from_xml(dom.XMLDesc(0), lambda t: int(dom.blockInfo(t)[0]))
        return ServerInfo(id=dom.UUIDString(), name=dom.name(), state=state, spec=spec)

    def get_server(self, server_id: str) -> ServerInfo:
        dom = self._dom(server_id)
        with libvirt_errors(f"server {server_id}"):
            return self._info(dom)

    def list_servers(self) -> list[ServerInfo]:
        with libvirt_errors("list domains"):
            return sorted(
                (self._info(d) for d in self._conn.listAllDomains(0)), key=lambda s: s.name
            )

    def list_networks(self) -> list[NetworkInfo]:
        with libvirt_errors("list networks"):
            out = []
            for n in self._conn.listAllNetworks(0):
                try:
                    bridge = n.bridgeName()
                except libvirt.libvirtError:
                    bridge = None
                out.append(NetworkInfo(n.UUIDString(), n.name(), bool(n.isActive()), bridge))
            return sorted(out, key=lambda n: n.name)

    def _pool(self) -> libvirt.virStoragePool:
        with libvirt_errors(f"pool {self._cfg.pool}"):
            return self._conn.storagePoolLookupByName(self._cfg.pool)

    def list_volumes(self) -> list[VolumeInfo]:
        pool = self._pool()
        with libvirt_errors("list volumes"):
            pool.refresh(0)
            return sorted(
                (volumes.volume_info(v) for v in pool.listAllVolumes(0)), key=lambda v: v.name
            )

    # -- guest agent -------------------------------------------------------------------------
    def agent_ping(self, server_id: str, timeout_s: float = 2.0) -> bool:
        return agent.ping(self._dom(server_id), timeout_s)

    def guest_exec(
        self,
        server_id: str,
        argv: Sequence[str],
        timeout_s: float = 30.0,
        stdin: bytes | None = None,
    ) -> ExecResult:
        return agent.guest_exec(self._dom(server_id), argv, timeout_s, stdin)

    def freeze(self, server_id: str, timeout_s: float) -> None:
        agent.freeze(self._dom(server_id), timeout_s)

    def thaw(self, server_id: str, timeout_s: float) -> None:
        agent.thaw(self._dom(server_id), timeout_s)

    # -- points --------------------------------------------------------------------------------
    def create_point(self, request: PointRequest) -> PointHandle:
        if request.point_id in self._points:
            raise SiteInputError("point_id", f"point {request.point_id} is already open")
        members: dict[str, points.Member] = {}
        for m in request.members:
            dom = self._dom(m.server_id)
            spec = self.capture_server(m.server_id)
            all_t = tuple(d.target for d in spec.disks)
            targets = points.check_targets(m.server_id, m.disks, all_t)
            sizes = {d.target: d.size_bytes for d in spec.disks}
            members[dom.UUIDString()] = points.Member(dom, targets, all_t, sizes, m.quiesce)
        # the request may name servers by name: the protocol runs on UUIDs
        by_uuid = PointRequest(
            request.point_id,
            tuple(
                QuiesceMember(uid, m.disks, m.quiesce)
                for uid, m in zip(members, request.members, strict=True)
            ),
            request.parent_point_id,
            request.freeze_timeout_s,
            request.on_quiesce_failure,
        )
        at_rest = [self._volume(path) for path in request.volumes]
        for vol in at_rest:
            volumes.check_snapshottable(vol)
        outcome, opened = points.take(
            members, by_uuid, self._cfg.scratch_dir, self._cfg.socket_dir, self._cfg.presync,
            at_rest,
        )  # fmt: skip
        self._points[request.point_id] = opened
        disks = tuple(
            PointDisk(uid, t, m.sizes[t], request.parent_point_id is not None)
            for uid, m in members.items()
            for t in m.targets
        ) + tuple(PointDisk("", v.name, v.size_bytes, False, volume=v.id) for v in at_rest)
        return PointHandle(
            point_id=request.point_id,
            site=self.name,
            parent_point_id=request.parent_point_id,
            consistency=outcome.consistency,
            disks=disks,
            freeze_window_s=outcome.freeze_window_s,
            reason=outcome.reason,
            steps=outcome.steps,
            taken_at=outcome.taken_at,
        )

    def _volume(self, path: str) -> VolumeInfo:
        with libvirt_errors(f"volume {path}"):
            return volumes.volume_info(self._conn.storageVolLookupByPath(path))

    @contextlib.contextmanager
    def open_point_disk(
        self, point: PointHandle, disk: PointDisk
    ) -> Iterator[backup.NbdPointReader | volumes.NbdSnapshotReader]:
        if disk.volume:  # a volume at rest: its internal snapshot, kept in the volume file
            name = volumes.snapshot_name(point.point_id)
            if not volumes.has_snapshot(disk.volume, name):
                raise SiteNotFound(f"point {point.point_id} holds no snapshot of {disk.target}")
            with volumes.NbdSnapshotReader(
                self._volume(disk.volume), self._cfg.socket_dir, name
            ) as snap:
                yield snap
            return
        opened = self._points.get(point.point_id) or self._reattach(point.point_id)
        if opened is None or disk.server_id not in opened.jobs:
            raise SiteNotFound(f"point {point.point_id} is not open for {disk.server_id}")
        reader = backup.NbdPointReader(opened.jobs[disk.server_id][1], disk.target)
        try:
            yield reader
        finally:
            reader.close()

    def _reattach(self, point_id: str) -> points.OpenPoint | None:
        """Find the backup jobs of ``point_id`` that a dead process left open in libvirt."""
        opened = points.OpenPoint()
        with libvirt_errors("list domains"):
            doms = self._conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        for dom in doms:
            job = backup.attach(dom, point_id, self._cfg.socket_dir)
            if job is not None:
                opened.jobs[dom.UUIDString()] = (dom, job)
        if not opened.jobs:
            return None
        self._points[point_id] = opened
        return opened

    def _end_jobs(self, point_id: str) -> None:
        opened = self._points.pop(point_id, None)
        if opened is not None:
            opened.end()
        leftover = self._reattach(point_id)  # jobs a dead process left open for this point
        self._points.pop(point_id, None)
        if leftover is not None:
            leftover.end()

    def release_point(self, point: PointHandle) -> None:
        self._end_jobs(point.point_id)
        for disk in point.disks:
            if disk.volume:
                volumes.delete_snapshot(disk.volume, volumes.snapshot_name(point.point_id))

    def delete_point(self, point_id: str) -> None:
        self._end_jobs(point_id)
        with libvirt_errors("list domains"):
            doms = self._conn.listAllDomains(0)
        for dom in doms:
            with contextlib.suppress(SiteNotFound):
                backup.delete_checkpoint(dom, point_id)
        # snapshots of volumes at rest that an abandoned point left (release deletes them)
        name = volumes.snapshot_name(point_id)
        for vol in self.list_volumes():
            if vol.format == "qcow2" and volumes.has_snapshot(vol.id, name):
                volumes.delete_snapshot(vol.id, name)

    # -- volumes -------------------------------------------------------------------------------
    def create_volume(self, name: str, size_bytes: int) -> VolumeInfo:
        vol = volumes.create(self._pool(), name, size_bytes)
        self._fresh.add(vol.id)
        return vol

    def open_volume_writer(self, volume: VolumeInfo) -> volumes.NbdVolumeWriter:
        fresh = volume.id in self._fresh
        self._fresh.discard(volume.id)
        return volumes.NbdVolumeWriter(volume, self._cfg.socket_dir, fresh=fresh)

    def delete_volume(self, volume: VolumeInfo) -> None:
        with libvirt_errors(f"delete volume {volume.name}"):
            self._conn.storageVolLookupByPath(volume.id).delete(0)

    # -- servers -------------------------------------------------------------------------------
    def define_server(
        self,
        spec: ServerSpec,
        *,
        name: str,
        network_map: dict[str, str],
        volumes: dict[str, VolumeInfo],
    ) -> str:
        console = (
            os.path.join(self._cfg.console_dir, f"{name}.console.log")
            if self._cfg.console_dir
            else None
        )
        xml = domxml.xml_from_spec(
            spec, name=name, network_map=network_map, volumes=volumes, console_log=console
        )
        with libvirt_errors(f"define {name}"):
            return str(self._conn.defineXML(xml).UUIDString())

    def start_server(self, server_id: str) -> None:
        dom = self._dom(server_id)
        with libvirt_errors(f"start {dom.name()}"):
            if not dom.isActive():
                dom.create()

    def stop_server(self, server_id: str, timeout_s: float = 30.0) -> StopOutcome:
        """Ask the guest to power off: the guest agent's guest-shutdown, or the ACPI power
        button when libvirt cannot use the agent. A domain still running ``timeout_s``
        after the request is destroyed and the answer is FORCED. The deadline counts from
        the request, including the time libvirt spends trying the agent."""
        dom = self._dom(server_id)
        if not dom.isActive():
            return StopOutcome.ALREADY_STOPPED
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(libvirt.libvirtError):  # e.g. it powered off meanwhile
            dom.shutdownFlags(
                libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT | libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN
            )
        while time.monotonic() < deadline:
            if not dom.isActive():
                return StopOutcome.GRACEFUL
            time.sleep(_POLL_S)
        try:
            self.destroy_server(server_id)
        except SiteConflict:  # "domain is not running": it powered off at the last moment
            if dom.isActive():
                raise
            return StopOutcome.GRACEFUL
        return StopOutcome.FORCED

    def destroy_server(self, server_id: str) -> None:
        dom = self._dom(server_id)
        with libvirt_errors(f"destroy {dom.name()}"):
            if dom.isActive():
                dom.destroy()

    def undefine_server(self, server_id: str) -> None:
        dom = self._dom(server_id)
        flags = libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
        with libvirt_errors(f"undefine {dom.name()}"):
            dom.undefineFlags(flags)

    def wait_ready(
        self, server_id: str, gates: Sequence[ReadinessGate], timeout_s: float
    ) -> ReadinessResult:
        start = time.monotonic()
        deadline = start + timeout_s
        passed: list[str] = []
        for gate in gates:
            detail = ""
            while True:
                ok, detail = self._check(server_id, gate, deadline)
                if ok:
                    passed.append(type(gate).__name__)
                    break
                if time.monotonic() >= deadline:
                    return ReadinessResult(
                        False,
                        time.monotonic() - start,
                        f"{type(gate).__name__}: {detail}",
                        tuple(passed),
                    )
                time.sleep(_POLL_S)
        return ReadinessResult(True, time.monotonic() - start, "", tuple(passed))

    def _check(self, server_id: str, gate: ReadinessGate, deadline: float) -> tuple[bool, str]:
        left = max(0.5, deadline - time.monotonic())
        if isinstance(gate, AgentGate):
            try:
                return agent.ping(self._dom(server_id), min(left, 2.0)), "agent silent"
            except (GuestAgentError, SiteError) as exc:
                return False, str(exc)
        if isinstance(gate, TcpGate):
            try:
                with socket.create_connection((gate.host, gate.port), timeout=min(left, 2.0)):
                    return True, ""
            except OSError as exc:
                return False, str(exc)
        if isinstance(gate, CommandGate):
            try:
                res = self.guest_exec(server_id, gate.argv, timeout_s=min(left, 10.0))
            except SiteError as exc:
                return False, str(exc)
            return res.exit_code == 0, f"exit {res.exit_code}"
        raise SiteInputError("gates", f"unknown gate {gate!r}")
