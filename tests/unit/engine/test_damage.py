"""Damaged points: recovery takes the newest intact point, refuses with exit 6, reports
damage it worked around. The repository is a real local one; a byte is flipped in a pack
file on disk."""

from __future__ import annotations

import pytest

from haven.domain.errors import ExitCode
from haven.domain.groups import GroupState
from haven.domain.operations import Operation, OperationKind, OperationState, StepState
from haven.domain.points import PointState, RecoveryPoint
from haven.engine import service, services
from haven.engine.workflows.failover import failover_workflow
from haven.engine.workflows.protect import protect_workflow
from haven.engine.workflows.test_failover import drill_workflow
from tests.support.repodamage import flip_byte, pack_key, packs
from tests.unit.engine.conftest import LabFactory
from tests.unit.engine.lab import Lab, disk_bytes


def _ok(op: Operation) -> Operation:
    assert op.state is OperationState.SUCCEEDED, (op.error, [(s.name, s.detail) for s in op.steps])
    return op


def _protect() -> str:
    return _ok(service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop")).result["point"]


def _point(point_id: str) -> RecoveryPoint:
    return services.catalog().point(point_id)


def _two_points_newest_damaged(lab: Lab) -> tuple[str, str, str]:
    """Point 1, then a change to db and point 2 (its new chunk in a new pack), then a
    byte flipped in that pack: point 2 is damaged, point 1 intact. (ids, damaged pack)"""
    first = _protect()
    lab.site("site-a").write_disk("db", "vda", 0, b"db second version")
    second = _protect()
    repo = lab.root / "repo"
    newest = packs(repo)[-1]
    flip_byte(newest)
    return first, second, pack_key(repo, newest)


def test_drill_skips_the_damaged_newest_point_and_says_so(lab: Lab) -> None:
    first, second, bad_pack = _two_points_newest_damaged(lab)
    op = _ok(service.run(OperationKind.TEST_FAILOVER, "shop", drill_workflow, "shop"))
    assert op.result["point"] == first
    assert second in op.result["skipped_points"] and bad_pack in op.result["skipped_points"]
    assert disk_bytes(lab.site("site-b"), "db-drill").startswith(b"db initial data")
    damaged = _point(second)
    assert damaged.state is PointState.DAMAGED
    assert damaged.damage is not None and damaged.damage.objects == (bad_pack,)
    assert damaged.damage.found_by == op.id
    assert _point(first).state is PointState.COMMITTED
    failed = [s for s in op.steps if s.state is StepState.FAILED]
    assert [s.name for s in failed] == ["recover.restore:db/vda"]
    assert second in failed[0].detail and bad_pack in failed[0].detail
    assert "recover.next-point" in [s.name for s in op.steps]


def test_drill_without_an_intact_point_fails_with_integrity_naming_the_objects(lab: Lab) -> None:
    point = _protect()
    repo = lab.root / "repo"
    for pack in packs(repo):  # (one pack per disk backed up)
        flip_byte(pack)
    op = service.run(OperationKind.TEST_FAILOVER, "shop", drill_workflow, "shop")
    assert op.state is OperationState.FAILED
    assert op.exit_code is ExitCode.INTEGRITY and op.error_type == "PointDamaged"
    assert point in op.error and "data/" in op.error
    assert _point(point).state is PointState.DAMAGED
    assert services.catalog().group_lock_holder("shop") is None


def test_failover_to_a_named_damaged_point_is_refused(lab: Lab) -> None:
    _first, second, bad_pack = _two_points_newest_damaged(lab)
    _ok(service.run(OperationKind.TEST_FAILOVER, "shop", drill_workflow, "shop"))  # finds it
    op = service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop", False, second)
    assert op.state is OperationState.FAILED and op.exit_code is ExitCode.INTEGRITY
    assert second in op.error and bad_pack in op.error
    assert services.catalog().group_state("shop") is GroupState.PROTECTED  # rolled back


def test_failover_named_point_that_proves_damaged_does_not_fall_back(lab: Lab) -> None:
    _first, second, bad_pack = _two_points_newest_damaged(lab)
    op = service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop", False, second)
    assert op.state is OperationState.FAILED and op.exit_code is ExitCode.INTEGRITY
    assert second in op.error and bad_pack in op.error
    assert "recover.next-point" not in [s.name for s in op.steps]
    assert _point(second).state is PointState.DAMAGED
    assert services.catalog().group_state("shop") is GroupState.PROTECTED


def test_unplanned_failover_falls_back_to_the_older_intact_point(lab: Lab) -> None:
    first, second, _bad = _two_points_newest_damaged(lab)
    op = _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop"))
    assert op.result["point"] == first and second in op.result["skipped_points"]
    assert disk_bytes(lab.site("site-b"), "db").startswith(b"db initial data")
    assert services.catalog().group_state("shop") is GroupState.FAILED_OVER


@pytest.fixture
def warm_lab(lab_with: LabFactory) -> Lab:
    return lab_with(warm=True)


def test_failover_into_warm_replicas_succeeds_around_damage_and_reports_it(
    warm_lab: Lab,
) -> None:
    point = _protect()  # the replicas at site-b now hold the point's data
    repo = warm_lab.root / "repo"
    bad = packs(repo)[0]
    flip_byte(bad)
    op = _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop"))
    assert op.result["point"] == point  # the replicas needed nothing from the bad pack
    assert disk_bytes(warm_lab.site("site-b"), "db").startswith(b"db initial data")
    assert pack_key(repo, bad) in op.result["point_damage"]
    found = _point(point)
    assert found.state is PointState.DAMAGED
    assert found.damage is not None and found.damage.objects == (pack_key(repo, bad),)
    verify = [s for s in op.steps if s.name == "recover.verify"]
    assert len(verify) == 1 and "damaged" in verify[0].detail


def test_failover_into_intact_warm_replicas_reads_them_back_clean(warm_lab: Lab) -> None:
    point = _protect()
    op = _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop"))
    assert "point_damage" not in op.result
    assert "read back" in op.result["verified"] and "intact" in op.result["verified"]
    assert _point(point).state is PointState.COMMITTED


def test_retention_expires_damaged_points_older_than_every_point_kept(lab: Lab) -> None:
    first = _protect()
    repo = lab.root / "repo"
    first_packs = packs(repo)
    for pack in first_packs:
        flip_byte(pack)
    drill = service.run(OperationKind.TEST_FAILOVER, "shop", drill_workflow, "shop")
    assert drill.exit_code is ExitCode.INTEGRITY  # found: first is damaged, none intact
    for pack in first_packs:  # bytes back (retention's prune must not trip on them)
        flip_byte(pack)
    later = []
    for i in range(3):  # the lab keeps the last 3 intact points
        lab.site("site-a").write_disk("web", "vda", 0, f"version {i}".encode())
        later.append(_protect())
    states = {p.id: p.state for p in services.catalog().points("shop")}
    assert states[first] is PointState.DELETED
    assert all(states[p] is PointState.COMMITTED for p in later)


def test_planned_failover_never_falls_back_from_its_damaged_final_point(lab: Lab) -> None:
    first = _protect()
    for pack in packs(lab.root / "repo"):
        flip_byte(pack)
    # nothing changed since: the final point's backup finds every chunk already stored
    # (deduplicated) and so references the damaged ones
    op = service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop", True)
    assert op.state is OperationState.FAILED and op.exit_code is ExitCode.INTEGRITY
    final = services.catalog().points("shop")[-1].id  # taken by this failover
    assert final != first and final in op.error and "never replaced" in op.error
    assert "recover.next-point" not in [s.name for s in op.steps]
    assert services.catalog().group_state("shop") is GroupState.PROTECTED
