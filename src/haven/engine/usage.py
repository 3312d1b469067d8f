"""Usage per project over a window [start, end): the figures chargeback needs.

Rules (docs/usage-and-quotas.md states them for tenants and operators):

- A group belongs to its ``project`` (a Keystone project id) as defined now; groups
  without one are the operator's, reported under project ``None``.
- protected GB-hours: while a group is protected -- in state protected,
  reverse-protected, failing-over or failing-back (not unprotected, suspended or
  failed-over) -- its protected size is the total size of the volumes recorded with its
  newest committed point (taken at or before that instant; 0 before its first); the
  GB-hours are that size integrated over the protected time inside the window (never
  beyond now), GB = 10^9 bytes. States come from the catalog's state history (0006);
  points keep their sizes after retention deletes them.
- stored bytes: ``engine/stored.py`` (a point-in-time figure, now).
- bytes between sites, repository bytes: each operation's own transfers (its result's
  ``bytes_between_sites`` / ``repository_bytes``, engine/traffic.py) counted when it
  finishes in the window; a failover or failback counts its total less its child
  points' (those finish, and count, on their own), so each byte is counted once.
  Operations that fail record no byte totals.
- points taken: points created in the window that were committed (whatever became of
  them since: expired and deleted ones count).
- drills, failovers, failbacks: operations of that kind finished in the window
  (succeeded or failed; ``*_failed`` says how many failed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from haven.catalog import accounting
from haven.domain.errors import ValidationError
from haven.domain.groups import GroupState
from haven.domain.operations import Operation, OperationKind, OperationState
from haven.domain.points import PointState, RecoveryPoint
from haven.engine import services, traffic
from haven.engine.stored import Owner, RepositoryUsage, stored_bytes

GB = 10**9
MAX_WINDOW = timedelta(days=400)
PROTECTED_STATES = frozenset(
    {GroupState.PROTECTED, GroupState.REVERSE_PROTECTED, GroupState.FAILING_OVER,
     GroupState.FAILING_BACK}
)  # fmt: skip
ONCE_COMMITTED = frozenset(
    {PointState.COMMITTED, PointState.DAMAGED, PointState.EXPIRED, PointState.DELETED}
)
COUNTED_RUNS = frozenset({OperationKind.TEST_FAILOVER, OperationKind.FAILOVER,
                          OperationKind.FAILBACK})  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProjectUsage:
    project: str | None  # None: the operator's own groups
    groups: int  # groups the project has now
    protected_gb_hours: float
    stored_bytes: int | None  # None: not computed (stored=False)
    bytes_between_sites: int
    repository_bytes: int
    points_taken: int
    drills_run: int = 0
    drills_failed: int = 0
    failovers_run: int = 0
    failovers_failed: int = 0
    failbacks_run: int = 0
    failbacks_failed: int = 0


@dataclass(frozen=True, slots=True)
class UsageReport:
    start: datetime
    end: datetime
    stored_at: datetime | None  # when stored bytes were measured (None: not measured)
    projects: tuple[ProjectUsage, ...]
    repositories: tuple[RepositoryUsage, ...] = field(default_factory=tuple)


def check_window(
    start: datetime, end: datetime, names: tuple[str, str] = ("start", "end")
) -> tuple[datetime, datetime]:
    """The window in UTC; ValidationError naming ``names[0]``/``names[1]`` (the caller's
    own option or parameter names) unless both carry a time zone and are representable
    in UTC, start < end, and the window is at most MAX_WINDOW."""
    utc: list[datetime] = []
    for name, when in zip(names, (start, end), strict=True):
        if when.tzinfo is None:
            raise ValidationError(name, "needs a time zone, e.g. 2026-11-01T00:00:00Z")
        try:
            utc.append(when.astimezone(UTC))
        except (OverflowError, ValueError):
            raise ValidationError(name, f"{when.isoformat()} is out of range in UTC") from None
    since, until = utc
    if until <= since:
        raise ValidationError(names[1], f"must be after {names[0]} ({since.isoformat()})")
    if until - since > MAX_WINDOW:
        raise ValidationError(
            names[1], f"the window is at most {MAX_WINDOW.days} days; ask for several windows"
        )
    return since, until


def usage(
    start: datetime,
    end: datetime,
    *,
    projects: Collection[str | None] | None = None,
    stored: bool = True,
    now: datetime | None = None,
) -> UsageReport:
    """Usage per project in [start, end). ``projects``: only these (None in it: the
    operator's groups); None: every project with a group. ``stored``: also measure the
    repositories (opens each one; reads manifests and pack indexes)."""
    start, end = check_window(start, end)
    now = now or datetime.now(UTC)
    cat = services.catalog()
    groups = list(cat.resources().groups)
    owner = {g.name: g.project for g in groups}
    wanted = set(owner.values()) if projects is None else set(projects)
    # pending points too: a protect under way has manifests in the repository already
    points = accounting.all_points(cat, states=ONCE_COMMITTED | {PointState.PENDING})
    tally = {p: _Tally(groups=sum(1 for o in owner.values() if o == p)) for p in wanted}
    _add_protected(tally, owner, points, start, min(end, now))
    _add_points(tally, owner, points, start, end)
    _add_operations(tally, owner, start, end)
    repositories: tuple[RepositoryUsage, ...] = ()
    stored_at = None
    if stored:
        measured = stored_bytes(groups, points)
        for p, t in tally.items():
            t.stored_bytes = measured.per_project.get(p, 0)
        repositories, stored_at = measured.repositories, now
    rows = [t.usage(p) for p, t in tally.items()]
    rows.sort(key=lambda r: (r.project is not None, r.project or ""))
    return UsageReport(start, end, stored_at, tuple(rows), repositories)


@dataclass(slots=True)
class _Tally:
    """A project's figures while they are being added up."""

    groups: int = 0
    byte_micros: int = 0  # protected bytes x microseconds
    stored_bytes: int | None = None
    bytes_between_sites: int = 0
    repository_bytes: int = 0
    points_taken: int = 0
    runs: dict[OperationKind, int] = field(default_factory=lambda: defaultdict(int))
    failed: dict[OperationKind, int] = field(default_factory=lambda: defaultdict(int))

    def usage(self, project: Owner) -> ProjectUsage:
        gb_hours = self.byte_micros / (3600 * 10**6 * GB)
        k = OperationKind
        return ProjectUsage(
            project, self.groups, gb_hours, self.stored_bytes, self.bytes_between_sites,
            self.repository_bytes, self.points_taken,
            self.runs[k.TEST_FAILOVER], self.failed[k.TEST_FAILOVER],
            self.runs[k.FAILOVER], self.failed[k.FAILOVER],
            self.runs[k.FAILBACK], self.failed[k.FAILBACK],
        )  # fmt: skip


def _add_protected(
    tally: dict[Owner, _Tally],
    owner: dict[str, Owner],
    points: list[RecoveryPoint],
    start: datetime,
    end: datetime,
) -> None:
    if end <= start:
        return
    history = accounting.state_changes(services.catalog(), end)
    sizes: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for p in points:  # oldest first
        if p.state in ONCE_COMMITTED:
            sizes[p.group].append((p.created_at, sum(v.size for v in p.volumes)))
    for group, project in owner.items():
        if project in tally:
            for a, b in _protected_spans(history.get(group, []), start, end):
                tally[project].byte_micros += _integral(sizes.get(group, []), a, b)


def _protected_spans(
    changes: list[accounting.StateChange], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) during which the group was in a protected state."""
    spans: list[tuple[datetime, datetime]] = []
    since: datetime | None = None  # protected since then (None: not protected)
    for c in changes:
        on = c.state in PROTECTED_STATES
        if on and since is None:
            since = c.at
        elif not on and since is not None:
            spans.append((since, c.at))
            since = None
    if since is not None:
        spans.append((since, end))
    return [(max(a, start), min(b, end)) for a, b in spans if b > start and a < end]


def _integral(steps: list[tuple[datetime, int]], a: datetime, b: datetime) -> int:
    """Byte-microseconds of the step function ``steps`` (size from each time on) over
    [a, b)."""
    total = 0
    size = 0
    cursor = a
    for at, new_size in steps:
        if at <= a:
            size = new_size
            continue
        if at >= b:
            break
        total += size * _micros(at - cursor)
        cursor, size = at, new_size
    return total + size * _micros(b - cursor)


def _micros(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds


def _add_points(
    tally: dict[Owner, _Tally],
    owner: dict[str, Owner],
    points: list[RecoveryPoint],
    start: datetime,
    end: datetime,
) -> None:
    for p in points:
        project = owner.get(p.group)
        if project in tally and p.state in ONCE_COMMITTED and start <= p.created_at < end:
            tally[project].points_taken += 1


def _add_operations(
    tally: dict[Owner, _Tally], owner: dict[str, Owner], start: datetime, end: datetime
) -> None:
    cat = services.catalog()
    ops = accounting.operations_finished(cat, start, end)
    parents = [op.id for op in ops if op.kind in (OperationKind.FAILOVER, OperationKind.FAILBACK)]
    kids = accounting.children(cat, parents)
    for op in ops:
        project = owner.get(op.group)
        if project not in tally:
            continue
        t = tally[project]
        t.bytes_between_sites += _own(op, kids.get(op.id, []), traffic.BETWEEN_SITES)
        t.repository_bytes += _own(op, kids.get(op.id, []), traffic.REPOSITORY_BYTES)
        if op.kind in COUNTED_RUNS:
            t.runs[op.kind] += 1
            t.failed[op.kind] += int(op.state is not OperationState.SUCCEEDED)


def _own(op: Operation, children: list[Operation], key: str) -> int:
    """The bytes ``op`` itself moved: its result's total less its children's."""
    total = _int(op.result.get(key))
    if total == 0:
        return 0
    return max(0, total - sum(_int(c.result.get(key)) for c in children))


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:  # a result written by a version that recorded something else
        return 0
