"""Usage per project (engine/usage.py, engine/stored.py): the figures checked against
known data in the fake lab's real catalog and repository."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from haven.catalog.models import GroupStateChangeRow
from haven.datamover import FileSource, backup_volume, restore_volume
from haven.domain.errors import ValidationError
from haven.domain.groups import GroupState
from haven.domain.operations import Operation, OperationState
from haven.domain.points import PointState, RecoveryPoint, VolumePoint
from haven.engine import api, resolve, services, traffic
from haven.engine.usage import ProjectUsage, UsageReport
from tests.support.tenants import two_projects
from tests.unit.engine.lab import Lab

DAY = timedelta(days=1)


def _ok(op: Operation) -> Operation:
    assert op.state is OperationState.SUCCEEDED, (op.error, [(s.name, s.detail) for s in op.steps])
    return op


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - DAY, now + timedelta(minutes=1)


def _by_project(report: UsageReport) -> dict[str | None, ProjectUsage]:
    return {r.project: r for r in report.projects}


def test_shared_chunks_are_split_equally_among_the_points_that_reference_them(
    lab: Lab, tmp_path: Path
) -> None:
    """Each project keeps its data in its own part of the repository (its own key), so
    chunks are shared within a part: shop's two points (p1) share every chunk, and a
    manifest the catalog does not know (a `haven volume backup` into p1's part of db's
    disk) shares db's chunk with them: p1 is charged 2/3 of it, the unknown 1/3."""
    two_projects(lab)
    for group in ("shop", "mall", "shop"):  # shop's second point references the same chunks
        _ok(api.protect(group))
    p1 = resolve.group_repository("shop", "offsite")
    stored: dict[str, int] = {}  # server -> the stored size of its disk's one data chunk
    for m in p1.manifests():
        (chunk,) = m.referenced()  # 2 MiB disks, data in the first 1 MiB chunk only
        location = p1.index.get(chunk)
        assert location is not None
        stored[m.volume.split(".")[1]] = location.length
    assert set(stored) == {"db", "app", "web"}  # mall's data is not in p1's part
    db_manifest = next(m for m in p1.manifests() if m.volume.split(".")[1] == "db")
    copy = tmp_path / "db-copy.img"
    restore_volume(p1, db_manifest, copy)
    backup_volume(p1, FileSource(copy), volume="by-hand")
    p2 = resolve.group_repository("mall", "offsite")
    stored_p2 = sum(p2.index.get(c).length for m in p2.manifests() for c in m.referenced())

    report = api.usage(*_window())
    rows = _by_project(report)
    assert (
        rows["p1"].stored_bytes
        == round(Fraction(2 * stored["db"], 3)) + stored["app"] + stored["web"]
    )
    assert rows["p2"].stored_bytes == stored_p2  # its one point holds all of its part
    parts = {r.project: r for r in report.repositories}
    assert set(parts) == {"p1", "p2"} and {r.repository for r in parts.values()} == {"offsite"}
    assert parts["p1"].unattributed_bytes == round(Fraction(stored["db"], 3))
    assert parts["p1"].missing_chunks == 0 and parts["p2"].unattributed_bytes == 0
    assert parts["p1"].pack_bytes >= parts["p1"].attributed_bytes  # packs hold trailers too
    assert report.stored_at is not None
    assert (rows["p1"].points_taken, rows["p2"].points_taken) == (2, 1)
    assert (rows["p1"].groups, rows["p2"].groups) == (1, 1)
    # one project asked for: only its row, the same figures
    only = api.usage(*_window(), projects={"p2"})
    assert [r.project for r in only.projects] == ["p2"]
    assert only.projects[0].stored_bytes == rows["p2"].stored_bytes
    # a project whose key was revoked: its part is listed as not measured, nothing charged
    api.revoke_project_key("offsite", "p2")
    after = api.usage(*_window())
    (gone,) = [r for r in after.repositories if r.project == "p2"]
    assert "revoked" in gone.unreadable and _by_project(after)["p2"].stored_bytes == 0


def _point(group: str, at: datetime, sizes: tuple[int, ...], state: PointState) -> RecoveryPoint:
    vols = tuple(VolumePoint("db", f"vd{i}", size, f"m-{at:%H%M}-{i}") for i, size in
                 enumerate(sizes))  # fmt: skip
    return RecoveryPoint(f"rp-{group}-{at:%H%M}", group, "site-a", at, state, volumes=vols)


def _history(group: str, *changes: tuple[GroupState, datetime]) -> None:
    with services.catalog().transaction() as s:
        for state, at in changes:
            s.add(GroupStateChangeRow(group_name=group, state=state.value, changed_at=at))


def test_protected_gb_hours_integrate_the_newest_points_size_over_protected_time(
    lab: Lab,
) -> None:
    two_projects(lab)
    cat = services.catalog()
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    h = timedelta(hours=1)
    gb = 10**9
    # 2 GB from t0, 3 GB from t0+2h (a point since deleted by retention still counts);
    # a failed point is no protected size
    cat.save_point(_point("shop", t0, (gb, gb), PointState.COMMITTED))
    cat.save_point(_point("shop", t0 + 2 * h, (3 * gb,), PointState.COMMITTED))
    cat.save_point(_point("shop", t0 + 150 * timedelta(minutes=1), (9 * gb,), PointState.FAILED))
    first = cat.point("rp-shop-0000")
    cat.save_point(replace(first, state=PointState.EXPIRED))
    cat.save_point(replace(first, state=PointState.DELETED))
    P = GroupState
    _history("shop", (P.PROTECTED, t0), (P.SUSPENDED, t0 + 3 * h), (P.PROTECTED, t0 + 5 * h),
             (P.FAILING_OVER, t0 + 7 * h), (P.FAILED_OVER, t0 + 8 * h))  # fmt: skip
    # window [t0+1h, t0+9h): 2 GB x 1 h + 3 GB x 1 h, suspended 2 h, 3 GB x 3 h
    # (protected, then failing over), failed over 1 h: 14 GB-hours
    report = api.usage(t0 + h, t0 + 9 * h, stored=False)
    rows = _by_project(report)
    assert rows["p1"].protected_gb_hours == pytest.approx(14.0, abs=1e-6)
    assert rows["p2"].protected_gb_hours == 0.0  # mall was never protected
    assert rows["p1"].stored_bytes is None and report.stored_at is None
    assert rows["p1"].points_taken == 1  # the 2 GB point is before the window; failed: no
    # never beyond now: a window reaching past it counts up to now only
    from haven.engine import usage as usage_mod

    half = usage_mod.usage(t0 + h, t0 + 9 * h, stored=False, now=t0 + 5 * h + h / 2)
    assert _by_project(half)["p1"].protected_gb_hours == pytest.approx(6.5, abs=1e-6)


def test_state_changes_are_recorded_from_now_on(lab: Lab) -> None:
    from haven.catalog import accounting

    _ok(api.protect("shop"))
    api.suspend("shop")
    api.resume("shop")
    history = accounting.state_changes(services.catalog(), datetime.now(UTC) + DAY)["shop"]
    assert [c.state for c in history] == [
        GroupState.PROTECTED, GroupState.SUSPENDED, GroupState.PROTECTED
    ]  # fmt: skip
    report = api.usage(*_window(), stored=False)
    assert _by_project(report)[None].protected_gb_hours > 0  # shop is the operator's here


def test_drills_failovers_failbacks_and_bytes_between_sites_count_each_byte_once(
    lab: Lab,
) -> None:
    two_projects(lab)
    protect = _ok(api.protect("shop"))
    drill = _ok(api.drill("shop"))
    _ok(api.cleanup(drill.id))
    bad = api.drill("shop", point="rp-none")
    assert bad.state is OperationState.FAILED
    lab.site("site-a").write_disk("db", "vda", 0, b"changed before the planned failover")
    failover = _ok(api.failover("shop", planned=True))
    lab.site("site-b").write_disk("db", "vda", 0, b"changed at the recovery site")
    failback = _ok(api.failback("shop"))
    cat = services.catalog()
    # child points that moved bytes: a double count would show
    final = cat.operation(f"{failover.id}-final")
    assert int(final.result[traffic.BETWEEN_SITES]) > 0  # site a -> the repository at b
    back = [cat.operation(f"{failback.id}-{c}") for c in ("rev", "final")]
    assert sum(int(c.result[traffic.REPOSITORY_BYTES]) for c in back) > 0

    rows = _by_project(api.usage(*_window(), stored=False))
    p1 = rows["p1"]
    assert (p1.drills_run, p1.drills_failed) == (2, 1)
    assert (p1.failovers_run, p1.failovers_failed) == (1, 0)
    assert (p1.failbacks_run, p1.failbacks_failed) == (1, 0)
    # the repository is at site b, the group at site a: the protect's upload crosses, the
    # failover's restore at site b does not; a parent's total includes its child points
    top = (protect, drill, failover, failback)
    expected = sum(int(op.result.get(traffic.BETWEEN_SITES, 0)) for op in top)
    assert int(protect.result[traffic.BETWEEN_SITES]) == int(protect.result["bytes_sent"]) > 0
    assert p1.bytes_between_sites == expected
    assert p1.repository_bytes == sum(int(op.result.get(traffic.REPOSITORY_BYTES, 0)) for op in top)
    # the points: shop's protect, the failover's final point, the failback's two
    assert p1.points_taken == len([p for p in cat.points("shop") if p.state is not
                                   PointState.FAILED])  # fmt: skip
    assert rows["p2"].drills_run == 0 and rows["p2"].bytes_between_sites == 0


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "end"),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "end"),
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "end"),
        (datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC), "start"),
    ],
)
def test_a_bad_window_is_refused_naming_the_field(
    lab: Lab, start: datetime, end: datetime, field: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        api.usage(start, end)
    assert exc.value.path == field
