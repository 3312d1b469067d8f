"""What usage and quotas read from the catalog: group state history, every point and
the operations finished in a window, and the per-project quota rows (since 0006).

Functions over an open :class:`~haven.catalog.store.Catalog`, each in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import inspect, or_, select

from haven.catalog.decode import decoded
from haven.catalog.models import GroupStateChangeRow, OperationRow, PointRow, ProjectQuotaRow
from haven.catalog.store import Catalog, _operation, _point
from haven.domain.groups import GroupState
from haven.domain.operations import Operation
from haven.domain.points import PointState, RecoveryPoint


@dataclass(frozen=True, slots=True)
class StateChange:
    group: str
    state: GroupState
    at: datetime


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """A project's limits; None: unlimited."""

    groups: int | None = None
    protected_bytes: int | None = None
    points: int | None = None


LIMIT_COLUMNS = ("groups", "protected_bytes", "points")


def state_changes(cat: Catalog, until: datetime) -> dict[str, list[StateChange]]:
    """Per group, the states it entered before ``until``, oldest first."""
    out: dict[str, list[StateChange]] = {}
    with cat.transaction() as s:
        rows = s.scalars(
            select(GroupStateChangeRow)
            .where(GroupStateChangeRow.changed_at < until)
            .order_by(GroupStateChangeRow.changed_at, GroupStateChangeRow.id)
        ).all()
        for r in rows:
            state = decoded(f"state change of group {r.group_name!r}", GroupState, r.state)
            out.setdefault(r.group_name, []).append(StateChange(r.group_name, state, r.changed_at))
    return out


def all_points(
    cat: Catalog,
    groups: Iterable[str] | None = None,
    states: Iterable[PointState] | None = None,
) -> list[RecoveryPoint]:
    """Every point (of ``groups``; in ``states``, else in every state), oldest first."""
    with cat.transaction() as s:
        q = select(PointRow).order_by(PointRow.created_at)
        if groups is not None:
            q = q.where(PointRow.group_name.in_(list(groups)))
        if states is not None:
            q = q.where(PointRow.state.in_([st.value for st in states]))
        return [_point(r) for r in s.scalars(q).all()]


def operations_finished(cat: Catalog, start: datetime, end: datetime) -> list[Operation]:
    """Operations (children included) that finished in [start, end), oldest first,
    without their steps."""
    with cat.transaction() as s:
        rows = s.scalars(
            select(OperationRow)
            .where(OperationRow.finished_at >= start, OperationRow.finished_at < end)
            .order_by(OperationRow.finished_at, OperationRow.id)
        ).all()
        return [_operation(r) for r in rows]


def children(cat: Catalog, parents: Iterable[str]) -> dict[str, list[Operation]]:
    """The child operations (``<parent>-<suffix>``) of each of ``parents``."""
    wanted = sorted(set(parents))
    out: dict[str, list[Operation]] = {p: [] for p in wanted}
    if not wanted:
        return out
    with cat.transaction() as s:
        for i in range(0, len(wanted), 200):
            batch = wanted[i : i + 200]
            like = [OperationRow.id.like(f"{p}-%") for p in batch]
            for r in s.scalars(select(OperationRow).where(or_(*like))).all():
                parent = r.id.rsplit("-", 1)[0]
                if parent in out:
                    out[parent].append(_operation(r))
    return out


def quota(cat: Catalog, project: str) -> QuotaLimits:
    with cat.transaction() as s:
        row = s.get(ProjectQuotaRow, project)
        return _limits(row)


def quotas(cat: Catalog) -> dict[str, QuotaLimits]:
    with cat.transaction() as s:
        rows = s.scalars(select(ProjectQuotaRow).order_by(ProjectQuotaRow.project)).all()
        return {r.project: _limits(r) for r in rows}


def set_quota(cat: Catalog, project: str, changes: Mapping[str, int | None]) -> QuotaLimits:
    """Change some of ``project``'s limits (keys: ``groups``, ``protected_bytes``,
    ``points``; None: unlimited); the others stay. A project left with no limit at all
    loses its row."""
    with cat.transaction() as s:
        row = s.get(ProjectQuotaRow, project, with_for_update=True)
        if row is None:
            row = ProjectQuotaRow(project=project, groups=None, protected_bytes=None, points=None)
            s.add(row)
        for key, value in changes.items():
            if key not in LIMIT_COLUMNS:
                raise KeyError(f"no quota {key!r} (known: {', '.join(LIMIT_COLUMNS)})")
            setattr(row, key, value)
        row.updated_at = datetime.now(UTC)
        limits = _limits(row)
        if limits == QuotaLimits():
            if inspect(row).persistent:
                s.delete(row)
            else:
                s.expunge(row)
        return limits


def _limits(row: ProjectQuotaRow | None) -> QuotaLimits:
    if row is None:
        return QuotaLimits()
    return QuotaLimits(row.groups, row.protected_bytes, row.points)
