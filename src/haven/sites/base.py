"""The site-driver protocol: what the engine may ask of a hypervisor or a cloud.

A driver declares its ``capabilities()`` so the engine can choose a path per site (e.g.
guest-agent quiesce vs. hook-only quiesce, changed-block incrementals vs. full re-reads).
Every driver passes tests/contract/test_site_drivers.py.

Life of a recovery point at the protected site::

    point = driver.create_point(PointRequest(...))       # ordered freeze -> snapshot -> thaw
    for disk in point.disks:
        with driver.open_point_disk(point, disk) as src:  # src: PointDiskReader
            datamover.backup(src, changed=src.changed_extents())
    driver.release_point(point)                          # keeps the CBT checkpoint

and at the recovery site::

    vol = driver.create_volume("erp-db-vda", size)
    with driver.open_volume_writer(vol) as dst:             # dst: VolumeWriter
        datamover.restore(..., dst)
    sid = driver.define_server(spec, name=..., network_map=..., volumes={"vda": vol})
    driver.start_server(sid); driver.wait_ready(sid, [AgentGate()], timeout_s=60)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Flag, StrEnum, auto
from typing import Protocol, runtime_checkable

from haven.domain.extents import Extent
from haven.domain.inventory import (
    Consistency,
    NetworkInfo,
    ServerInfo,
    ServerSpec,
    VolumeInfo,
)


class Capability(Flag):
    GUEST_QUIESCE = auto()  # guest-agent filesystem freeze/thaw
    GUEST_EXEC = auto()  # run a command in the guest (hooks, checks)
    GROUP_SNAPSHOT = auto()  # one point across several servers' disks
    CHANGED_BLOCK_TRACKING = auto()  # incrementals report only changed extents
    VOLUME_CREATION = auto()  # create volumes and write data into them
    SERVER_DEFINITION = auto()  # define servers from a ServerSpec
    NETWORK_CREATION = auto()  # create networks (test bubbles)
    # restore into an existing volume in place, also a stopped server's attached disk
    # (failback onto the home servers); without it, failback recreates the home servers
    VOLUME_OVERWRITE = auto()
    READINESS_AGENT = auto()
    READINESS_TCP = auto()
    # a point may include volumes attached to no running server (PointRequest.volumes),
    # captured at the same instant as the servers' disks
    STANDALONE_VOLUMES = auto()


class OnQuiesceFailure(StrEnum):
    CRASH_CONSISTENT = "crash_consistent"  # thaw all, take the point anyway, say why
    FAIL = "fail"  # thaw all, take no point, raise QuiesceFailed


@dataclass(frozen=True, slots=True)
class QuiesceMember:
    """One server of the group, in freeze order. ``disks`` None means all its disks."""

    server_id: str
    disks: tuple[str, ...] | None = None
    quiesce: bool = True  # False: a member whose app is quiesced by a hook, or stateless


@dataclass(frozen=True, slots=True)
class PointRequest:
    point_id: str  # unique per group; drivers name checkpoints/snapshots after it
    members: tuple[QuiesceMember, ...]  # freeze order; thaw runs in reverse
    parent_point_id: str | None = None  # incremental against this point's checkpoint
    freeze_timeout_s: float = 2.0  # bound on each member's freeze call
    on_quiesce_failure: OnQuiesceFailure = OnQuiesceFailure.CRASH_CONSISTENT
    # the protection group's name: drivers that keep a per-group object at the site (a
    # Cinder consistency group) name it after this; "" = the driver's own default
    group: str = ""
    # ids of volumes attached to no running server, taken at the same instant as the
    # members' disks (drivers declaring Capability.STANDALONE_VOLUMES; a volume attached
    # to a running server is requested as a disk of that server instead)
    volumes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PointDisk:
    """One disk of a point: a server's disk (``target`` its device name), or a standalone
    volume (``volume`` its id; ``server_id`` is then "" and ``target`` its name)."""

    server_id: str
    target: str
    size_bytes: int
    incremental: bool  # True: changed extents since the parent point are known
    volume: str = ""


class QuiesceAction(StrEnum):
    FREEZE = "freeze"  # guest-agent fsfreeze of one member
    THAW = "thaw"
    NOVA_QUIESCE = "nova-quiesce"  # Nova's quiesced image snapshot (freeze+snapshot+thaw)


@dataclass(frozen=True, slots=True)
class QuiesceStep:
    server_id: str
    action: QuiesceAction
    ok: bool
    duration_s: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PointHandle:
    """A point in time taken at a site, valid until ``release_point``.

    ``freeze_window_s`` runs from the first freeze call to the end of the last thaw of a
    member that was frozen (0 when nothing was frozen; a best-effort thaw of a member whose
    freeze failed is not counted); ``reason`` says why a point is only crash-consistent.
    ``steps`` lists every freeze/thaw call in order, with its duration and outcome.
    """

    point_id: str
    site: str
    parent_point_id: str | None
    consistency: Consistency
    disks: tuple[PointDisk, ...]
    freeze_window_s: float
    reason: str | None = None
    steps: tuple[QuiesceStep, ...] = ()
    taken_at: float = 0.0  # time.time() of the snapshot instant


@runtime_checkable
class PointDiskReader(Protocol):
    """Read access to one disk of a point.

    Structurally the data mover's ``BlockSource`` (``size`` property, ``readinto`` that fills
    the buffer unless at the end, safe to call from several threads), plus the CBT input.
    A reader may also offer ``allocated() -> list[Extent]`` (the data mover's AllocationMap:
    ranges that may hold non-zero data); the libvirt reader does, from NBD base:allocation.
    """

    @property
    def size(self) -> int: ...

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int: ...

    def changed_extents(self) -> list[Extent] | None:
        """Extents written since the parent point; None for a full point (read everything)."""
        ...

    @property
    def bytes_read(self) -> int: ...


@runtime_checkable
class VolumeWriter(Protocol):
    """Write access to a volume at the recovery site: the data mover's ``BlockTarget``."""

    @property
    def size(self) -> int: ...

    @property
    def fresh(self) -> bool:
        """True if the volume reads as all zeros (just created): restore may skip zeros."""
        ...

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int: ...

    def write(self, offset: int, data: bytes | memoryview) -> None: ...

    def zero(self, offset: int, length: int) -> None: ...

    def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_s: float


@dataclass(frozen=True, slots=True)
class NativeCopy:
    """One disk of a point kept by the site's own backup service (policy data path
    ``cinder-backup``; the engine's NativeBackups role). ``ref`` is self-contained: the
    recovery site restores from it alone, even when the protected site is gone."""

    ref: str
    bytes_read: int = 0  # what the site reports; 0 when it does not say
    bytes_sent: int = 0


# -- readiness gates: what "up" means for a server at the recovery site ----------------------
@dataclass(frozen=True, slots=True)
class AgentGate:
    """The guest agent answers a sync/ping."""


@dataclass(frozen=True, slots=True)
class TcpGate:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class CommandGate:
    """A command in the guest exits 0."""

    argv: tuple[str, ...]


ReadinessGate = AgentGate | TcpGate | CommandGate


@dataclass(frozen=True, slots=True)
class ReadinessResult:
    ready: bool
    waited_s: float
    detail: str = ""
    passed: tuple[str, ...] = field(default=())


class StopOutcome(StrEnum):
    """How ``stop_server`` ended. The engine's step log names every FORCED server: its
    applications were cut off rather than shut down."""

    ALREADY_STOPPED = "already-stopped"
    GRACEFUL = "graceful"  # the guest powered itself off when asked, before the timeout
    FORCED = "forced"  # still running at the timeout: powered off (pulled the plug)
    # the site stopped it by its own rules and does not say whether it forced it (Nova:
    # a clean shutdown, then a power-off after its own shutdown_timeout)
    UNREPORTED = "unreported"


class SiteDriver(Protocol):
    """What the engine calls. Every method may raise haven.sites.errors.* only."""

    name: str

    def capabilities(self) -> Capability: ...

    # inventory
    def list_servers(self) -> list[ServerInfo]: ...
    def get_server(self, server_id: str) -> ServerInfo: ...
    def capture_server(self, server_id: str) -> ServerSpec: ...
    def list_networks(self) -> list[NetworkInfo]: ...
    def list_volumes(self) -> list[VolumeInfo]: ...

    # guest agent
    def agent_ping(self, server_id: str, timeout_s: float = 2.0) -> bool: ...
    def guest_exec(
        self,
        server_id: str,
        argv: Sequence[str],
        timeout_s: float = 30.0,
        stdin: bytes | None = None,
    ) -> ExecResult: ...

    # points (protected site)
    def create_point(self, request: PointRequest) -> PointHandle: ...
    def open_point_disk(
        self, point: PointHandle, disk: PointDisk
    ) -> AbstractContextManager[PointDiskReader]: ...
    def release_point(self, point: PointHandle) -> None: ...
    def delete_point(self, point_id: str) -> None: ...

    # volumes and servers (recovery site)
    def create_volume(self, name: str, size_bytes: int) -> VolumeInfo: ...
    def open_volume_writer(self, volume: VolumeInfo) -> AbstractContextManager[VolumeWriter]: ...
    def delete_volume(self, volume: VolumeInfo) -> None: ...
    def define_server(
        self,
        spec: ServerSpec,
        *,
        name: str,
        network_map: dict[str, str],
        volumes: dict[str, VolumeInfo],
    ) -> str: ...
    def start_server(self, server_id: str) -> None: ...
    def stop_server(self, server_id: str, timeout_s: float = 30.0) -> StopOutcome:
        """Ask the guest to shut down; power it off if it still runs after ``timeout_s``
        (FORCED). Returns once the server is off."""
        ...

    def destroy_server(self, server_id: str) -> None: ...
    def undefine_server(self, server_id: str) -> None: ...
    def wait_ready(
        self, server_id: str, gates: Sequence[ReadinessGate], timeout_s: float
    ) -> ReadinessResult: ...
