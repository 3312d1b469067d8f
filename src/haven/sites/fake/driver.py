"""An in-memory SiteDriver for engine unit tests: same contract, no hypervisor.

It also plays a site with projects (the engine's project roles, ``haven.sites.fake.project``)
and creates test-bubble networks.

Disks are bytearrays; changed-block tracking records 64 KiB blocks written since each
point, like a QEMU dirty bitmap. Test knobs: ``add_server``, ``write_disk``,
``set_agent(responsive=..., freeze_delay_s=...)``, ``frozen`` (never non-empty after a
point), ``fail_next`` (make the next call of a method raise).
"""

from __future__ import annotations

import contextlib
import copy
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from haven.domain.extents import Extent, merge_extents
from haven.domain.inventory import NetworkInfo, PowerState, ServerInfo, ServerSpec, VolumeInfo
from haven.sites import consistency
from haven.sites.base import (
    AgentGate,
    Capability,
    CommandGate,
    ExecResult,
    PointDisk,
    PointHandle,
    PointRequest,
    QuiesceAction,
    ReadinessGate,
    ReadinessResult,
    StopOutcome,
    TcpGate,
)
from haven.sites.errors import (
    GuestAgentError,
    GuestExecError,
    SiteConflict,
    SiteError,
    SiteInputError,
    SiteNotFound,
)
from haven.sites.fake.project import FakeProjectMixin, FakeProjectState

BLOCK = 64 * 1024


@dataclass
class _Server:
    id: str
    spec: ServerSpec
    disks: dict[str, bytearray]
    state: PowerState = PowerState.SHUTOFF
    agent_ok: bool = True
    freeze_delay_s: float = 0.0
    powers_off: bool = True  # answers a graceful stop; else stop_server has to force it
    dirty: dict[str, dict[str, set[int]]] = field(default_factory=dict)  # point -> disk -> blocks


class FakeReader:
    def __init__(self, data: bytes, changed: list[Extent] | None) -> None:
        self._data = data
        self._changed = changed
        self._read = 0

    @property
    def size(self) -> int:
        return len(self._data)

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int:
        view = memoryview(buf).cast("B")
        chunk = self._data[offset : offset + len(view)]
        view[: len(chunk)] = chunk
        self._read += len(chunk)
        return len(chunk)

    def changed_extents(self) -> list[Extent] | None:
        return None if self._changed is None else list(self._changed)

    @property
    def bytes_read(self) -> int:
        return self._read


class FakeWriter:
    def __init__(self, buf: bytearray, fresh: bool) -> None:
        self._buf, self._fresh = buf, fresh

    @property
    def size(self) -> int:
        return len(self._buf)

    @property
    def fresh(self) -> bool:
        return self._fresh

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int:
        view = memoryview(buf).cast("B")
        chunk = self._buf[offset : offset + len(view)]
        view[: len(chunk)] = chunk
        return len(chunk)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if offset + len(data) > len(self._buf):
            raise SiteInputError("offset", "write past the end of the volume")
        self._buf[offset : offset + len(data)] = bytes(data)

    def zero(self, offset: int, length: int) -> None:
        self._buf[offset : offset + length] = bytes(length)

    def flush(self) -> None:
        return None


class FakeDriver(FakeProjectMixin):
    def __init__(self, name: str = "fake", networks: Sequence[str] = ("app-net",)) -> None:
        self.name = name
        self.project = FakeProjectState()
        self.servers: dict[str, _Server] = {}
        self.networks = {n: NetworkInfo(str(uuid.uuid4()), n, True, f"br-{n}") for n in networks}
        self.volumes: dict[str, tuple[VolumeInfo, bytearray]] = {}
        self.frozen: set[str] = set()
        self.freeze_log: list[tuple[QuiesceAction, str]] = []  # (action, server id) in call order
        self._fresh: set[str] = set()
        self._points: dict[str, dict[tuple[str, str], tuple[bytes, list[Extent] | None]]] = {}

    def capabilities(self) -> Capability:
        return (
            Capability.GUEST_QUIESCE | Capability.GUEST_EXEC | Capability.GROUP_SNAPSHOT
            | Capability.CHANGED_BLOCK_TRACKING | Capability.VOLUME_CREATION
            | Capability.SERVER_DEFINITION | Capability.READINESS_AGENT
            | Capability.READINESS_TCP | Capability.VOLUME_OVERWRITE
            | Capability.STANDALONE_VOLUMES
            | Capability.NETWORK_CREATION
        )  # fmt: skip

    # -- test knobs ----------------------------------------------------------------------------
    def add_server(self, spec: ServerSpec, running: bool = True) -> str:
        sid = str(uuid.uuid4())
        disks = {d.target: bytearray(d.size_bytes) for d in spec.disks}
        state = PowerState.RUNNING if running else PowerState.SHUTOFF
        self.servers[sid] = _Server(sid, replace(spec, source_id=sid), disks, state)
        return sid

    def write_disk(self, server_id: str, target: str, offset: int, data: bytes) -> None:
        srv = self._srv(server_id)
        srv.disks[target][offset : offset + len(data)] = data
        blocks = set(range(offset // BLOCK, (offset + len(data) - 1) // BLOCK + 1))
        for per_disk in srv.dirty.values():
            per_disk.setdefault(target, set()).update(blocks)

    def set_agent(
        self, server_id: str, responsive: bool = True, freeze_delay_s: float = 0.0
    ) -> None:
        srv = self._srv(server_id)
        srv.agent_ok, srv.freeze_delay_s = responsive, freeze_delay_s

    def set_powers_off(self, server_id: str, powers_off: bool) -> None:
        """Whether the server powers itself off when asked (else stops are FORCED)."""
        self._srv(server_id).powers_off = powers_off

    # -- inventory -----------------------------------------------------------------------------
    def _srv(self, server_id: str) -> _Server:
        srv = self.servers.get(server_id) or next(
            (s for s in self.servers.values() if s.spec.name == server_id), None
        )
        if srv is None:
            raise SiteNotFound(f"server {server_id}: no such server at {self.name}")
        return srv

    def get_server(self, server_id: str) -> ServerInfo:
        s = self._srv(server_id)
        return ServerInfo(s.id, s.spec.name, s.state, s.spec)

    def list_servers(self) -> list[ServerInfo]:
        return sorted((self.get_server(i) for i in self.servers), key=lambda s: s.name)

    def capture_server(self, server_id: str) -> ServerSpec:
        return copy.deepcopy(self._srv(server_id).spec)

    def list_networks(self) -> list[NetworkInfo]:
        return sorted(self.networks.values(), key=lambda n: n.name)

    def list_volumes(self) -> list[VolumeInfo]:
        return sorted((v for v, _ in self.volumes.values()), key=lambda v: v.name)

    # -- guest agent ---------------------------------------------------------------------------
    def _agent(self, server_id: str) -> _Server:
        srv = self._srv(server_id)
        if srv.state is not PowerState.RUNNING or not srv.agent_ok:
            raise GuestAgentError(f"agent of {srv.spec.name} is not responding")
        return srv

    def agent_ping(self, server_id: str, timeout_s: float = 2.0) -> bool:
        try:
            self._agent(server_id)
        except GuestAgentError:
            return False
        return True

    def guest_exec(self, server_id: str, argv: Sequence[str], timeout_s: float = 30.0,
                   stdin: bytes | None = None) -> ExecResult:  # fmt: skip
        """Understands ``echo ...``, ``true``, ``false``, ``cat`` (echoes stdin)."""
        try:
            self._agent(server_id)
        except GuestAgentError as exc:
            raise GuestExecError(str(exc)) from exc
        if server_id in self.frozen or self._srv(server_id).id in self.frozen:
            raise GuestExecError("guest is frozen")
        cmd = argv[0].rsplit("/", 1)[-1] if argv else ""
        if cmd == "echo":
            return ExecResult(0, (" ".join(argv[1:]) + "\n").encode(), b"", 0.0)
        if cmd == "cat":
            return ExecResult(0, stdin or b"", b"", 0.0)
        if cmd in ("true", "false"):
            return ExecResult(0 if cmd == "true" else 1, b"", b"", 0.0)
        raise GuestExecError(f"fake guest cannot run {cmd!r}")

    def freeze(self, server_id: str, timeout_s: float) -> None:
        srv = self._agent(server_id)
        if srv.freeze_delay_s:
            time.sleep(srv.freeze_delay_s)
        self.frozen.add(srv.id)
        self.freeze_log.append((QuiesceAction.FREEZE, srv.id))

    def thaw(self, server_id: str, timeout_s: float) -> None:
        srv = self._agent(server_id)
        self.frozen.discard(srv.id)
        self.freeze_log.append((QuiesceAction.THAW, srv.id))

    # -- points --------------------------------------------------------------------------------
    def create_point(self, request: PointRequest) -> PointHandle:
        if request.point_id in self._points:
            raise SiteInputError("point_id", f"point {request.point_id} is already open")
        plan = []
        for m in request.members:
            srv = self._srv(m.server_id)
            targets = m.disks if m.disks is not None else tuple(srv.disks)
            if set(targets) - set(srv.disks):
                raise SiteInputError(f"members.{m.server_id}.disks", "unknown disk")
            if request.parent_point_id and request.parent_point_id not in srv.dirty:
                raise SiteNotFound(f"no checkpoint {request.parent_point_id} on {srv.spec.name}")
            plan.append((srv, targets))
        standalone = []
        for vid in request.volumes:
            if vid not in self.volumes:
                raise SiteNotFound(f"volume {vid}: no such volume at {self.name}")
            standalone.append(self.volumes[vid][0])
        data: dict[tuple[str, str], tuple[bytes, list[Extent] | None]] = {}

        def snapshot() -> None:
            for srv, targets in plan:
                for t in targets:
                    changed = None
                    if request.parent_point_id:
                        blocks = srv.dirty[request.parent_point_id].get(t, set())
                        changed = merge_extents(
                            Extent(b * BLOCK, min(BLOCK, len(srv.disks[t]) - b * BLOCK))
                            for b in blocks
                        )
                    data[(srv.id, t)] = (bytes(srv.disks[t]), changed)
                srv.dirty[request.point_id] = {}
            for vol in standalone:  # no changed-block tracking: read whole
                data[("", vol.id)] = (bytes(self.volumes[vol.id][1]), None)

        outcome = consistency.take_group_point(self, request, snapshot)
        self._points[request.point_id] = data
        disks = tuple(
            PointDisk(srv.id, t, len(srv.disks[t]), request.parent_point_id is not None)
            for srv, targets in plan for t in targets
        ) + tuple(
            PointDisk("", vol.name, vol.size_bytes, False, volume=vol.id) for vol in standalone
        )  # fmt: skip
        return PointHandle(
            request.point_id, self.name, request.parent_point_id, outcome.consistency, disks,
            outcome.freeze_window_s, outcome.reason, outcome.steps, outcome.taken_at,
        )  # fmt: skip

    @contextlib.contextmanager
    def open_point_disk(self, point: PointHandle, disk: PointDisk) -> Iterator[FakeReader]:
        key = (disk.server_id, disk.volume or disk.target)
        entry = self._points.get(point.point_id, {}).get(key)
        if entry is None:
            raise SiteNotFound(
                f"point {point.point_id} is not open for {disk.server_id or disk.target}"
            )
        yield FakeReader(*entry)

    def release_point(self, point: PointHandle) -> None:
        self._points.pop(point.point_id, None)

    def delete_point(self, point_id: str) -> None:
        self._points.pop(point_id, None)
        for srv in self.servers.values():
            srv.dirty.pop(point_id, None)

    # -- volumes and servers -------------------------------------------------------------------
    def create_volume(self, name: str, size_bytes: int) -> VolumeInfo:
        if any(v.name == name for v, _ in self.volumes.values()):
            raise SiteConflict(f"volume {name} exists")
        vol = VolumeInfo(f"fake://{self.name}/{name}", name, size_bytes, "raw")
        self.volumes[vol.id] = (vol, bytearray(size_bytes))
        self._fresh.add(vol.id)
        return vol

    @contextlib.contextmanager
    def open_volume_writer(self, volume: VolumeInfo) -> Iterator[FakeWriter]:
        if volume.id not in self.volumes:
            raise SiteNotFound(f"volume {volume.name}")
        fresh = volume.id in self._fresh
        self._fresh.discard(volume.id)
        yield FakeWriter(self.volumes[volume.id][1], fresh)

    def delete_volume(self, volume: VolumeInfo) -> None:
        if self.volumes.pop(volume.id, None) is None:
            raise SiteNotFound(f"volume {volume.name}")
        self.project.volume_type_of.pop(volume.id, None)

    def define_server(self, spec: ServerSpec, *, name: str, network_map: dict[str, str],
                      volumes: dict[str, VolumeInfo]) -> str:  # fmt: skip
        if any(s.spec.name == name for s in self.servers.values()):
            raise SiteConflict(f"server {name} exists")
        for nic in spec.nics:
            if network_map.get(nic.network) not in self.networks:
                raise SiteInputError(f"network_map.{nic.network}", "no target network")
        disks = {}
        for d in spec.disks:
            if d.target not in volumes or volumes[d.target].id not in self.volumes:
                raise SiteInputError(f"volumes.{d.target}", "no volume for this disk")
            disks[d.target] = self.volumes[volumes[d.target].id][1]  # shared: writes show up
        sid = str(uuid.uuid4())
        nics = tuple(replace(n, network=network_map[n.network]) for n in spec.nics)
        attached = tuple(replace(d, source=volumes[d.target].id) for d in spec.disks)
        self.servers[sid] = _Server(
            sid, replace(spec, name=name, nics=nics, disks=attached, source_id=sid), disks
        )
        return sid

    def start_server(self, server_id: str) -> None:
        self._srv(server_id).state = PowerState.RUNNING

    def stop_server(self, server_id: str, timeout_s: float = 30.0) -> StopOutcome:
        srv = self._srv(server_id)
        if srv.state is not PowerState.RUNNING:
            return StopOutcome.ALREADY_STOPPED
        srv.state = PowerState.SHUTOFF
        return StopOutcome.GRACEFUL if srv.powers_off else StopOutcome.FORCED

    def destroy_server(self, server_id: str) -> None:
        self._srv(server_id).state = PowerState.SHUTOFF

    def undefine_server(self, server_id: str) -> None:
        srv = self._srv(server_id)
        if srv.state is PowerState.RUNNING:
            raise SiteConflict(f"server {srv.spec.name} is running")
        del self.servers[srv.id]
        self.project.placements.pop(srv.id, None)
        for port in self.project.ports.values():  # as a cloud unbinds a deleted server's ports
            if port.server_id == srv.id:
                port.server_id = None

    def wait_ready(self, server_id: str, gates: Sequence[ReadinessGate],
                   timeout_s: float) -> ReadinessResult:  # fmt: skip
        start = time.monotonic()
        passed: list[str] = []
        for gate in gates:
            ok, why = self._check(server_id, gate, timeout_s)
            if not ok:
                return ReadinessResult(False, time.monotonic() - start, why, tuple(passed))
            passed.append(type(gate).__name__)
        return ReadinessResult(True, time.monotonic() - start, "", tuple(passed))

    def _check(self, server_id: str, gate: ReadinessGate, timeout_s: float) -> tuple[bool, str]:
        if isinstance(gate, AgentGate):
            return self.agent_ping(server_id), "AgentGate: agent silent"
        if isinstance(gate, TcpGate):
            try:
                with socket.create_connection((gate.host, gate.port), timeout=timeout_s):
                    return True, ""
            except OSError as exc:
                return False, f"TcpGate: {exc}"
        if isinstance(gate, CommandGate):
            try:
                return self.guest_exec(server_id, gate.argv).exit_code == 0, "CommandGate"
            except SiteError as exc:
                return False, f"CommandGate: {exc}"
        raise SiteInputError("gates", f"unknown gate {gate!r}")
