"""Per-group status: the newest point's age against the RPO, the last operation.

compliant: the newest committed point is younger than the RPO; breach: older (or none);
suspended: protection is paused, the RPO is allowed to grow (the age is still shown).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from haven.engine import resolve, services


class Compliance(Enum):
    COMPLIANT = "compliant"
    BREACH = "breach"
    SUSPENDED = "suspended"
    NOT_PROTECTED = "not-protected"  # failed over and not yet protected back


@dataclass(frozen=True, slots=True)
class GroupStatus:
    group: str
    state: str
    compliance: Compliance
    rpo_seconds: int
    last_point: str | None
    last_point_age_seconds: float | None
    last_point_consistency: str | None
    active_site: str
    standby_site: str
    last_operation: str | None
    last_operation_kind: str | None
    last_operation_state: str | None
    busy_with: str | None


def group_status(name: str, now: datetime | None = None) -> GroupStatus:
    cat = services.catalog()
    now = now or datetime.now(UTC)
    g = resolve.group(name)
    pol = resolve.policy(g.policy)
    state = cat.group_state(name)
    points = resolve.committed_points(name)
    last = points[-1] if points else None
    age = (now - last.created_at).total_seconds() if last else None
    if state.value == "suspended":
        comp = Compliance.SUSPENDED
    elif state.value == "failed-over":
        comp = Compliance.NOT_PROTECTED
    elif age is not None and age <= pol.rpo_seconds:
        comp = Compliance.COMPLIANT
    else:
        comp = Compliance.BREACH
    where = cat.placement(name)
    ops = cat.operations(name, limit=1)
    op = ops[0] if ops else None
    return GroupStatus(
        group=name,
        state=state.value,
        compliance=comp,
        rpo_seconds=pol.rpo_seconds,
        last_point=last.id if last else None,
        last_point_age_seconds=round(age, 1) if age is not None else None,
        last_point_consistency=last.consistency.value if last else None,
        active_site=where.active_site if where else g.source_site,
        standby_site=where.standby_site if where else g.target_site,
        last_operation=op.id if op else None,
        last_operation_kind=op.kind.value if op else None,
        last_operation_state=op.state.value if op else None,
        busy_with=cat.group_lock_holder(name),
    )


def all_status() -> list[GroupStatus]:
    groups = services.catalog().resources().groups
    return [group_status(g.name) for g in groups]
