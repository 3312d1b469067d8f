from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from haven.datamover.retention import PointTime, RetentionPolicy, select_keep

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pts(hours: list[float]) -> list[PointTime]:
    return [PointTime(f"p{i}", T0 + timedelta(hours=h)) for i, h in enumerate(hours)]


def test_empty_policy_keeps_everything() -> None:
    p = pts([0, 1, 2])
    assert select_keep(p, RetentionPolicy()) == {"p0", "p1", "p2"}


def test_keep_last() -> None:
    assert select_keep(pts([0, 5, 1, 3]), RetentionPolicy(keep_last=2)) == {"p1", "p3"}


def test_keep_daily_takes_newest_of_each_day() -> None:
    # day0: p0 (1h), p1 (20h); day1: p2 (30h); day2: p3 (50h), p4 (60h)
    p = pts([1, 20, 30, 50, 60])
    assert select_keep(p, RetentionPolicy(keep_daily=2)) == {"p4", "p2"}
    assert select_keep(p, RetentionPolicy(keep_daily=5)) == {"p4", "p2", "p1"}


def test_rules_combine() -> None:
    p = pts([h * 6 for h in range(40)])  # every 6 hours for 10 days
    keep = select_keep(
        p, RetentionPolicy(keep_last=1, keep_hourly=2, keep_weekly=2, keep_monthly=1)
    )
    assert "p39" in keep and "p38" in keep
    assert len(keep) <= 1 + 2 + 2 + 1


def test_weekly_and_monthly_buckets() -> None:
    days = [d * 24.0 for d in range(70)]
    keep_w = select_keep(pts(days), RetentionPolicy(keep_weekly=3))
    assert len(keep_w) == 3
    keep_m = select_keep(pts(days), RetentionPolicy(keep_monthly=12))
    assert keep_m == {"p30", "p58", "p69"}  # Jan 31, Feb 28, Mar 11


policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 5),
    keep_hourly=st.integers(0, 5),
    keep_daily=st.integers(0, 5),
    keep_weekly=st.integers(0, 3),
    keep_monthly=st.integers(0, 3),
)
hours = st.lists(st.floats(0, 24 * 90, allow_nan=False), min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(hours, policies)
def test_properties(h: list[float], policy: RetentionPolicy) -> None:
    p = pts(h)
    keep = select_keep(p, policy)
    ids = {x.point_id for x in p}
    assert keep <= ids
    if p and not policy.is_empty():
        newest = max(p, key=lambda x: (x.time, x.point_id))
        assert newest.point_id in keep  # every rule keeps the newest point
        bound = (
            policy.keep_last
            + policy.keep_hourly
            + policy.keep_daily
            + policy.keep_weekly
            + policy.keep_monthly
        )
        assert len(keep) <= bound
    if policy.keep_last:
        newest_n = sorted(p, key=lambda x: (x.time, x.point_id), reverse=True)[: policy.keep_last]
        assert {x.point_id for x in newest_n} <= keep


@settings(max_examples=100, deadline=None)
@given(hours, policies, st.sampled_from(["keep_last", "keep_hourly", "keep_daily"]))
def test_monotone_in_counts(h: list[float], policy: RetentionPolicy, field: str) -> None:
    if policy.is_empty():
        return
    bigger = RetentionPolicy(
        **{**{f: getattr(policy, f) for f in policy.__slots__}, field: getattr(policy, field) + 1}
    )
    assert select_keep(pts(h), policy) <= select_keep(pts(h), bigger)
