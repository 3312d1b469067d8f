"""Which points retention expires: one rule for the protect's retention step and for
the points quota, which must foresee it (a protect at the quota whose retention would
expire a point is allowed).

The rule: the policy chooses among committed points (``select_keep``), the newest is
always kept; damaged points take no place in the policy (it counts intact points), and
one older than every point kept can never be chosen for recovery again, so it expires
with them; a newer one stays (a repair may make it whole).
"""

from __future__ import annotations

from datetime import datetime

from haven.datamover import PointTime, RetentionPolicy, select_keep
from haven.domain.points import PointState, RecoveryPoint
from haven.domain.policies import Retention


def retention_policy(r: Retention) -> RetentionPolicy:
    return RetentionPolicy(keep_last=r.keep_last, keep_hourly=r.hourly, keep_daily=r.daily,
                           keep_weekly=r.weekly, keep_monthly=r.monthly)  # fmt: skip


def to_expire(
    r: Retention, points: list[RecoveryPoint], new_point: datetime | None = None
) -> tuple[list[RecoveryPoint], int]:
    """(the points of one group, given oldest first in any state, that retention
    expires; how many committed points it keeps). ``new_point``: the time of a point
    about to be committed, counted as the newest (it is kept, never expired)."""
    committed = [p for p in points if p.state is PointState.COMMITTED]
    times = [PointTime(p.id, p.created_at) for p in committed]
    if new_point is not None:
        times.append(PointTime("", new_point))  # no point id is empty
    keep = select_keep(times, retention_policy(r))
    if times:
        keep.add(times[-1].point_id)
    expired = [p for p in committed if p.id not in keep]
    oldest_kept = min((t.time for t in times if t.point_id in keep), default=None)
    expired += [
        p
        for p in points
        if p.state is PointState.DAMAGED and oldest_kept is not None and p.created_at < oldest_kept
    ]
    return expired, len(keep)
