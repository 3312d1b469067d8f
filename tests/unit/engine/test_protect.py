from __future__ import annotations

from haven.domain.groups import GroupState
from haven.domain.operations import OperationKind, OperationState, StepState
from haven.domain.points import Consistency, PointState
from haven.engine import service, services
from haven.engine.workflows.protect import protect_workflow
from tests.unit.engine.lab import DISK, Lab


def test_protect_full_then_incremental(lab: Lab) -> None:
    op = service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop")
    assert op.state is OperationState.SUCCEEDED, op.error
    names = [s.name for s in op.steps]
    assert names[0] == "protect.start"
    assert {"protect.backup:db/vda", "protect.backup:app/vda", "protect.backup:web/vda"} <= set(
        names
    )
    assert all(s.state is StepState.DONE for s in op.steps)
    assert op.result["consistency"] == "application"
    assert int(op.result["bytes_read"]) == 3 * DISK
    cat = services.catalog()
    assert cat.group_state("shop") is GroupState.PROTECTED
    assert cat.group_lock_holder("shop") is None

    a = lab.site("site-a")
    a.write_disk("db", "vda", 64 * 1024 * 5, b"change after the first point")
    op2 = service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop")
    assert op2.state is OperationState.SUCCEEDED, op2.error
    # changed-block tracking: only the one repository chunk holding the change is read
    assert int(op2.result["bytes_read"]) == 1024 * 1024 < 3 * DISK
    assert op2.result["incremental"] == "True"
    points = cat.points("shop")
    assert [p.state for p in points] == [PointState.COMMITTED, PointState.COMMITTED]
    assert points[1].parent == points[0].id
    assert points[1].consistency is Consistency.APPLICATION
    assert points[1].stats.freeze_window_ms is not None
    # freeze order db, app, web; thaw reversed
    log = [(act, a.get_server(sid).name) for act, sid in a.freeze_log[-6:]]
    assert log == [
        ("freeze", "db"), ("freeze", "app"), ("freeze", "web"),
        ("thaw", "web"), ("thaw", "app"), ("thaw", "db"),
    ]  # fmt: skip


def test_retention_expires_old_points_and_their_data(lab: Lab) -> None:
    from haven.engine import resolve

    ids = []
    for i in range(4):  # the lab's policy keeps the last 3
        lab.site("site-a").write_disk("web", "vda", 0, f"version {i}".encode())
        op = service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop")
        assert op.state is OperationState.SUCCEEDED, op.error
        ids.append(op.result["point"])
    states = {p.id: p.state for p in services.catalog().points("shop")}
    assert states[ids[0]] is PointState.DELETED
    assert all(states[i] is PointState.COMMITTED for i in ids[1:])
    repo = resolve.repository("offsite")
    live = {m.point_id for m in repo.manifests()}
    assert ids[0] not in live and set(ids[1:]) <= live
