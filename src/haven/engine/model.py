"""Data passed between workflow steps (DBOS records them: keep them picklable and small)."""

from __future__ import annotations

from dataclasses import dataclass, field

from haven.domain.groups import Member, MemberKind
from haven.domain.inventory import ServerSpec, VolumeInfo
from haven.domain.plans import Mappings, RecoveryPlan
from haven.domain.points import Consistency, VolumePoint, name_objects
from haven.domain.policies import ConsistencyRequirement, DataPath, Retention
from haven.domain.project import InfraPlan, ProjectSnapshot


def volume_key(group: str, server: str, disk: str) -> str:
    """The volume's name in the repository: stable across sites, so a point taken at the
    recovery site (reverse protection) increments from the points taken at the source."""
    return f"{group}.{server}.{disk}"


def member_volume_key(group: str, volume: str) -> str:
    """A volume member's name in the repository (``/``: a group name has none, so it
    never meets a server disk's ``group.server.disk``)."""
    return f"{group}/{volume}"


def repository_key(group: str, vp: VolumePoint) -> str:
    if vp.kind is MemberKind.VOLUME:
        return member_volume_key(group, vp.member)
    return volume_key(group, vp.member, vp.volume)


def recovered_volume_name(group: str, vp: VolumePoint, suffix: str = "") -> str:
    """The volume a point's disk is restored into at another site (warm-standby replicas
    and failover: no suffix; drills: ``-drill``)."""
    if vp.kind is MemberKind.VOLUME:
        return f"{group}-{vp.member}{suffix}"
    return f"{group}-{vp.member}-{vp.volume}{suffix}"


@dataclass(frozen=True, slots=True)
class VolumeAt:
    """A volume member where the group runs now: its id at the active site and, when it
    is attached to a server there, that server's id and the disk's target. ``host`` is
    the member's ``attached_to`` when it is attached to that server (its definition is
    captured with the point), else "". ``live``: the server runs, so the point takes the
    volume as a disk of that server (a backup job), not as a volume at rest."""

    ref: str
    volume_id: str
    name: str  # its name at the active site
    size: int
    host: str = ""
    server_id: str = ""
    target: str = ""
    live: bool = False


@dataclass(frozen=True, slots=True)
class ProtectContext:
    op_id: str
    group: str
    point_id: str
    active_site: str
    standby_site: str
    repository: str
    servers: dict[str, str]  # member server name -> id at the active site
    parent_point: str | None  # newest committed point: manifests increment from it
    parent_checkpoint: bool  # parent taken at the active site: changed-block tracking usable
    stopped: bool  # servers are shut down (final point of a planned failover/failback)
    consistency: ConsistencyRequirement
    freeze_timeout_s: float
    warm_standby: bool
    retention: Retention
    started_at: float
    lock_owner: str
    data_path: DataPath = DataPath.REPOSITORY  # where disk data goes: repository or native
    # the group's members as they were when the operation started: an `apply` meanwhile
    # (or before a resume) changes later operations, never this one
    members: tuple[Member, ...] = ()
    volumes: tuple[VolumeAt, ...] = ()  # the group's volume members at the active site
    bandwidth_limit: int | None = None  # bytes/s for this point's repository traffic
    repository_site: str | None = None  # where the repository is (engine/traffic.py)


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    point_id: str
    handle: object  # the driver's PointHandle
    consistency: Consistency
    reason: str
    freeze_window_ms: float
    hooks: tuple[str, ...] = ()
    quiesce: tuple[str, ...] = ()  # the freeze/thaw calls in order: "freeze db", "thaw db"

    def detail(self) -> str:
        text = f"{self.consistency.value}-consistent, freeze window {self.freeze_window_ms:.0f} ms"
        if self.quiesce:
            text += f" [{', '.join(self.quiesce)}]"
        text = f"{text} ({self.reason})" if self.reason else text
        return f"{text}; hooks: {'; '.join(self.hooks)}" if self.hooks else text


@dataclass(frozen=True, slots=True)
class BackupOutcome:
    volume: VolumePoint
    reused: bool = False

    def detail(self) -> str:
        if self.reused:
            return f"{self.volume.manifest}: already in the repository"
        return (
            f"{self.volume.manifest}: read {self.volume.bytes_read} B, "
            f"sent {self.volume.bytes_sent} B of {self.volume.size} B"
        )


@dataclass(frozen=True, slots=True)
class Note:
    """A step's result when all it has to say is one line."""

    text: str = ""
    data: dict[str, str] = field(default_factory=dict)

    def detail(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class SkippedPoint:
    """A newer point a recovery passed over because its data is damaged."""

    point_id: str
    objects: tuple[str, ...]
    reason: str

    def summary(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.point_id}: damaged, {name_objects(self.objects)}{why}"


@dataclass(frozen=True, slots=True)
class RecoverContext:
    op_id: str
    kind: str  # "failover" | "test-failover" | "failback"
    group: str
    plan: RecoveryPlan
    point_id: str
    point_created_at: float
    source_site: str
    target_site: str
    repository: str
    specs: dict[str, ServerSpec]  # captured server definitions, by server name
    volumes: tuple[VolumePoint, ...]
    network_map: dict[str, str]
    names: dict[str, str]  # server name -> name at the target
    started_at: float
    existing_servers: dict[str, str] = field(default_factory=dict)  # name -> id to reuse
    existing_volumes: dict[str, VolumeInfo] = field(default_factory=dict)  # "srv/disk" -> vol
    reuse_replicas: bool = True  # drills never do
    volume_suffix: str = ""
    lock_owner: str = ""
    name_suffix: str = ""  # names = {server: server + name_suffix} (rebuilt on a new point)
    bubble: str = ""  # a drill's test network: every NIC goes there, whatever the point's
    fallback: bool = False  # a damaged point may be replaced by the next older intact one
    skipped: tuple[SkippedPoint, ...] = ()  # newer damaged points passed over, newest first
    point_why: str = ""  # why this point was chosen (the result's point_reason)
    # project infrastructure (sites with projects): the point's snapshot, the mappings to
    # apply (failback: the plan's, inverted) and, once the preflight passed, its plan
    project: ProjectSnapshot | None = None
    mappings: Mappings = field(default_factory=Mappings)
    infra: InfraPlan | None = None
    notes: tuple[str, ...] = ()  # what preparing it did that the step log must show

    def detail(self) -> str:
        return "; ".join(self.notes)
