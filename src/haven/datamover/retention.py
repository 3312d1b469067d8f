"""Retention selection: which recovery points to keep. Pure functions, no I/O.

Semantics (as restic's ``forget``): points are considered newest first.
- ``keep_last = n`` keeps the n newest points.
- ``keep_hourly/daily/weekly/monthly = n`` keeps, for each of the n newest distinct
  hours/days/ISO weeks/months that have points, the newest point in that bucket.
A point is kept if any rule keeps it. An empty policy keeps everything (prune must be
told explicitly to forget). Times are compared in UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from haven.datamover.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def __post_init__(self) -> None:
        # A negative count would keep nothing in its rule: refused, never "keep none".
        for name in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= 1_000_000:
                raise InvalidArgument(
                    f"--{name.replace('_', '-')}",
                    f"must be a whole number from 0 to 1000000, not {value!r}",
                )

    def is_empty(self) -> bool:
        return not (
            self.keep_last
            or self.keep_hourly
            or self.keep_daily
            or self.keep_weekly
            or self.keep_monthly
        )


@dataclass(frozen=True, slots=True)
class PointTime:
    point_id: str
    time: datetime


def _buckets(policy: RetentionPolicy) -> list[tuple[int, Callable[[datetime], Hashable]]]:
    return [
        (policy.keep_hourly, lambda t: (t.year, t.month, t.day, t.hour)),
        (policy.keep_daily, lambda t: (t.year, t.month, t.day)),
        (policy.keep_weekly, lambda t: t.isocalendar()[:2]),
        (policy.keep_monthly, lambda t: (t.year, t.month)),
    ]


def select_keep(points: Sequence[PointTime], policy: RetentionPolicy) -> set[str]:
    """Ids of the points to keep (the others may be forgotten)."""
    if policy.is_empty():
        return {p.point_id for p in points}
    ordered = sorted(points, key=lambda p: (p.time.astimezone(UTC), p.point_id), reverse=True)
    keep = {p.point_id for p in ordered[: policy.keep_last]}
    for count, bucket in _buckets(policy):
        if count <= 0:
            continue
        seen: set[Hashable] = set()
        for p in ordered:
            b = bucket(p.time.astimezone(UTC))
            if b in seen:
                continue
            seen.add(b)
            keep.add(p.point_id)
            if len(seen) >= count:
                break
    return keep
