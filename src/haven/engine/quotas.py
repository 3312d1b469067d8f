"""Per-project quotas: limits on groups, protected bytes and points, and where the engine
enforces them (docs/usage-and-quotas.md).

Use, as the quotas count it:
- groups: the project's groups in the catalog;
- protected bytes: for each of its groups, the total size of the volumes recorded with
  its newest live (committed or damaged) point;
- points: its groups' points that are pending, committed or damaged.

Enforcement, before any work, with QuotaExceeded (exit 4; HTTP 403) or, for protected
bytes, SizeQuotaExceeded (exit 4; HTTP 413), naming the quota, the limit and the use:
- apply: a group new to a project (created, or moved into it) beyond its groups quota;
  the whole apply is refused, nothing is written;
- protect (the CLI or API call, and again in the protect's first step, which also
  covers ``haven serve``): when the point would make the project hold more points than
  its quota -- counting the points this protect's retention will expire -- or when the
  group's size now, measured at the site before anything is taken, would bring the
  project's protected bytes over its quota.
Not enforced: on the operator's groups (no project); on the points a failover or
failback takes itself (its final and reverse points: recovery is never refused for a
quota); on groups already beyond a limit lowered after them (they stay; new ones are
refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from haven.catalog import accounting
from haven.catalog.accounting import QuotaLimits
from haven.catalog.store import Catalog, Placement
from haven.domain.errors import QuotaExceeded, SizeQuotaExceeded, ValidationError
from haven.domain.groups import MemberKind, ProtectionGroup
from haven.domain.inventory import DiskRole
from haven.domain.points import PointState, RecoveryPoint
from haven.domain.resources import Resources
from haven.domain.tenancy import check_project
from haven.engine import keep, resolve, services, volumes
from haven.engine.model import VolumeAt


class QuotaResource(Enum):
    GROUPS = "groups"
    PROTECTED_BYTES = "protected_bytes"
    POINTS = "points"


# the largest limit that can be set (a larger one is surely a mistake; unset for none)
MAX_LIMIT = {
    QuotaResource.GROUPS: 100_000,
    QuotaResource.PROTECTED_BYTES: 2**60,  # 1 EiB
    QuotaResource.POINTS: 10_000_000,
}
_HELD = frozenset({PointState.PENDING, PointState.COMMITTED, PointState.DAMAGED})
_LIVE = frozenset({PointState.COMMITTED, PointState.DAMAGED})


@dataclass(frozen=True, slots=True)
class QuotaLine:
    limit: int | None  # None: unlimited
    in_use: int


@dataclass(frozen=True, slots=True)
class ProjectQuota:
    project: str
    groups: QuotaLine
    protected_bytes: QuotaLine
    points: QuotaLine


def valid_project(project: str, field: str = "project") -> str:
    try:
        return check_project(project)
    except ValueError as exc:
        raise ValidationError(field, str(exc)) from None


def check_limit(resource: QuotaResource, value: int | None, field: str | None = None) -> None:
    """ValidationError naming ``field`` (default: the resource's name) unless ``value`` is
    None (unlimited) or a whole number from 0 to MAX_LIMIT."""
    name = field or resource.value
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, f"{value!r} is not a whole number")
    if value < 0:
        raise ValidationError(name, f"{value} is negative; give 0 or more (or unlimited)")
    if value > MAX_LIMIT[resource]:
        raise ValidationError(
            name, f"{value} is more than {MAX_LIMIT[resource]}, the largest limit; "
            "leave it unlimited instead",
        )  # fmt: skip


def show(project: str) -> ProjectQuota:
    """``project``'s limits and use (a project without a quota: every limit None)."""
    valid_project(project)
    return _report(project, accounting.quota(services.catalog(), project))


def show_all() -> list[ProjectQuota]:
    """Every project that has a quota or a group, by project id."""
    cat = services.catalog()
    limits = accounting.quotas(cat)
    projects = set(limits) | {g.project for g in cat.resources().groups if g.project}
    return [_report(p, limits.get(p, QuotaLimits())) for p in sorted(projects)]


def set_limits(project: str, changes: Mapping[QuotaResource, int | None]) -> ProjectQuota:
    """Change some of ``project``'s limits (None: unlimited); the others stay. A limit
    below the current use is accepted: what exists stays, new use is refused."""
    valid_project(project)
    for resource, value in changes.items():
        check_limit(resource, value)
    limits = accounting.set_quota(
        services.catalog(), project, {r.value: v for r, v in changes.items()}
    )
    return _report(project, limits)


def _report(project: str, limits: QuotaLimits) -> ProjectQuota:
    groups = [g for g in services.catalog().resources().groups if g.project == project]
    points = accounting.all_points(services.catalog(), [g.name for g in groups], _HELD)
    return ProjectQuota(
        project,
        QuotaLine(limits.groups, len(groups)),
        QuotaLine(limits.protected_bytes, sum(_protected_size(points, g.name) for g in groups)),
        QuotaLine(limits.points, sum(1 for p in points if p.state in _HELD)),
    )


def _protected_size(points: list[RecoveryPoint], group: str) -> int:
    live = [p for p in points if p.group == group and p.state in _LIVE]
    return sum(v.size for v in live[-1].volumes) if live else 0


# --- enforcement ---------------------------------------------------------------------


def check_apply(cat: Catalog, current: Resources, desired: Resources) -> None:
    """Refuse an apply (into ``cat``) that brings a project more groups than its quota
    allows."""
    existing = {g.name: g.project for g in current.groups}
    arriving: dict[str, list[str]] = {}
    for g in desired.groups:
        if g.project is not None and (g.name not in existing or existing[g.name] != g.project):
            arriving.setdefault(g.project, []).append(g.name)
    if not arriving:
        return
    merged = current.overlay(desired).groups
    for project, names in sorted(arriving.items()):
        limit = accounting.quota(cat, project).groups
        count = sum(1 for g in merged if g.project == project)
        if limit is not None and count > limit:
            raise QuotaExceeded(project, QuotaResource.GROUPS.value, limit, count - len(names),
                                count)  # fmt: skip


def check_protect(
    g: ProtectionGroup,
    where: Placement | None = None,
    located: tuple[VolumeAt, ...] | None = None,
) -> None:
    """Refuse a protect of ``g`` beyond its project's points or protected-bytes quota.
    ``where``/``located``: the placement and volume members the caller already read
    (else read here); the site is asked only when a protected-bytes limit is set."""
    if g.project is None:
        return
    cat = services.catalog()
    limits = accounting.quota(cat, g.project)
    if limits.points is None and limits.protected_bytes is None:
        return
    groups = [x for x in cat.resources().groups if x.project == g.project]
    points = accounting.all_points(cat, [x.name for x in groups], _HELD)
    if limits.points is not None:
        held = sum(1 for p in points if p.state in _HELD)
        policy = resolve.policy(g.policy)
        mine = [p for p in points if p.group == g.name]
        expiring, _ = keep.to_expire(policy.retention, mine, datetime.now(UTC))
        after = held + 1 - len(expiring)
        if after > limits.points:
            raise QuotaExceeded(g.project, QuotaResource.POINTS.value, limits.points, held, after)
    if limits.protected_bytes is not None:
        in_use = sum(_protected_size(points, x.name) for x in groups)
        after = in_use - _protected_size(points, g.name) + size_now(g, where, located)
        if after > limits.protected_bytes:
            raise SizeQuotaExceeded(g.project, QuotaResource.PROTECTED_BYTES.value,
                                    limits.protected_bytes, in_use, after)  # fmt: skip


def size_now(
    g: ProtectionGroup,
    where: Placement | None = None,
    located: tuple[VolumeAt, ...] | None = None,
) -> int:
    """The bytes a point of ``g`` would record now, as the active site shows them: each
    server member's disks (those its ``volumes`` names, else every disk but scratch
    ones) and each volume member."""
    where = where or resolve.placement(g)
    drv = resolve.driver(where.active_site)
    servers = {s.id: s for s in drv.list_servers()}
    total = 0
    for m in g.members:
        if m.kind is not MemberKind.SERVER or m.ref not in where.servers:
            continue
        info = servers.get(where.servers[m.ref])
        if info is None:
            continue  # the protect itself says the server is gone
        chosen = [d for d in info.spec.disks if d.target in m.volumes or (
            not m.volumes and d.role is not DiskRole.SCRATCH)]  # fmt: skip
        total += sum(d.size_bytes for d in chosen)
    if located is None:
        members = {k: v for k, v in where.servers.items() if k in g.servers()}
        hosts = {k: v for k, v in where.servers.items() if k in g.hosts()}
        located = volumes.locate(drv, g, where.active_site, members, hosts)
    return total + sum(v.size for v in located)
