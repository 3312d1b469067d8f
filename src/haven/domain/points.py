"""Recovery points: group-wide points in time, immutable once committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum

from haven.domain.groups import MemberKind
from haven.domain.states import StateMachine


class Consistency(StrEnum):
    """How consistent a recovery point is across its members (shared by sites and engine)."""

    APPLICATION = "application"  # every member frozen (or quiesced by hook) together
    CRASH = "crash"  # as if the power had been cut at one instant for all members


class PointState(Enum):
    PENDING = "pending"  # data being captured/sent; invisible to recovery
    COMMITTED = "committed"  # manifests written; usable for recovery
    DAMAGED = "damaged"  # its data failed verification; recovery skips it
    FAILED = "failed"
    EXPIRED = "expired"  # chosen for removal by retention
    DELETED = "deleted"


_P = PointState
POINT_STATES: StateMachine[PointState] = StateMachine(
    "recovery point",
    _P.PENDING,
    {
        _P.PENDING: frozenset({_P.COMMITTED, _P.FAILED}),
        # a committed point's data never changes; only what is known about it does
        _P.COMMITTED: frozenset({_P.EXPIRED, _P.DAMAGED}),
        # a later check (after a repair) may find every object intact again
        _P.DAMAGED: frozenset({_P.COMMITTED, _P.EXPIRED}),
        _P.FAILED: frozenset({_P.DELETED}),
        _P.EXPIRED: frozenset({_P.DELETED}),
        _P.DELETED: frozenset(),
    },
)


@dataclass(frozen=True, slots=True)
class VolumePoint:
    """One volume's data in a point: a manifest in a repository or a native backup id.

    A server member's disk: ``member`` is the server, ``volume`` the disk's target. A
    volume member (``kind`` VOLUME): ``member`` is the volume's name at the source,
    ``host`` the server it is recovered into (its ``attached_to``; "" for none) and
    ``volume`` its disk target at that server ("" when it has no host)."""

    member: str
    volume: str
    size: int
    manifest: str  # repository manifest id, or NATIVE_PREFIX + the site's own backup ref
    bytes_read: int = 0
    bytes_sent: int = 0
    kind: MemberKind = MemberKind.SERVER
    host: str = ""

    @property
    def key(self) -> str:
        """Unique within a point: ``server/disk``, or ``volume:name`` for a volume member
        (step labels, the recovery's volume maps)."""
        if self.kind is MemberKind.VOLUME:
            return f"volume:{self.member}"
        return f"{self.member}/{self.volume}"

    @property
    def native(self) -> bool:
        """True when the data is kept by the site's backup service (data path
        cinder-backup), not in a Haven repository."""
        return self.manifest.startswith(NATIVE_PREFIX)


NATIVE_PREFIX = "native:"


@dataclass(frozen=True, slots=True)
class PointStats:
    freeze_window_ms: float | None = None
    bytes_read: int = 0
    bytes_sent: int = 0
    duration_seconds: float = 0.0


def name_objects(objects: tuple[str, ...], limit: int = 3) -> str:
    """The first ``limit`` objects, then how many more: one line for tables and messages."""
    shown = ", ".join(objects[:limit]) or "no object named"
    return f"{shown} and {len(objects) - limit} more" if len(objects) > limit else shown


@dataclass(frozen=True, slots=True)
class Damage:
    """Why a point is DAMAGED: the repository objects to blame (``data/..`` packs,
    ``index/..``, ``manifests/..``, or ``chunk <id>`` when no object holds a chunk), what
    was wrong, and who found it (an operation id or ``repo check``)."""

    objects: tuple[str, ...]
    reason: str
    found_at: datetime
    found_by: str

    def merged(self, other: Damage) -> Damage:
        """Both findings in one: objects united, reasons kept, the later time and finder."""
        objects = tuple(sorted(set(self.objects) | set(other.objects)))
        reasons: list[str] = []
        for part in (*self.reason.split("; "), *other.reason.split("; ")):
            if part and part not in reasons:
                reasons.append(part)
        latest = other if other.found_at >= self.found_at else self
        return Damage(objects, "; ".join(reasons), latest.found_at, latest.found_by)

    def summary(self) -> str:
        """One line for tables and messages: the first objects, then why."""
        shown = name_objects(self.objects)
        return f"{shown} ({self.reason})" if self.reason else shown


@dataclass(frozen=True, slots=True)
class RecoveryPoint:
    id: str
    group: str
    source_site: str
    created_at: datetime
    state: PointState = PointState.PENDING
    consistency: Consistency = Consistency.CRASH
    consistency_reason: str = ""
    parent: str | None = None
    volumes: tuple[VolumePoint, ...] = ()
    stats: PointStats = field(default_factory=PointStats)
    damage: Damage | None = None  # set while the point is DAMAGED
