from __future__ import annotations

from haven.domain.groups import GroupState
from haven.domain.inventory import PowerState
from haven.domain.operations import Operation, OperationKind, OperationState
from haven.engine import service, services
from haven.engine.workflows.cleanup import cleanup_workflow
from haven.engine.workflows.failover import failover_workflow
from haven.engine.workflows.protect import protect_workflow
from haven.engine.workflows.test_failover import drill_workflow
from tests.unit.engine.lab import SERVERS, Lab, disk_bytes


def _ok(op: Operation) -> Operation:
    assert op.state is OperationState.SUCCEEDED, (op.error, [(s.name, s.detail) for s in op.steps])
    return op


def _protect() -> Operation:
    return _ok(service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop"))


def test_drill_then_cleanup_removes_exactly_what_it_created(lab: Lab) -> None:
    _protect()
    b = lab.site("site-b")
    b.create_network("unrelated-net")
    before_vols = {v.id for v in b.list_volumes()}
    drill = _ok(service.run(OperationKind.TEST_FAILOVER, "shop", drill_workflow, "shop"))
    b = lab.site("site-b")
    drilled = {s.name: s for s in b.list_servers()}
    assert set(drilled) == {f"{s}-drill" for s in SERVERS}
    assert all(s.state is PowerState.RUNNING for s in drilled.values())
    # every NIC in the bubble, data as at the point
    assert {n.network for s in drilled.values() for n in s.spec.nics} == {"shop-drill"}
    bubble = b.project.networks["shop-drill"][1]  # no project recorded: the default CIDR
    assert [x.cidr for x in bubble.subnets] == ["192.168.250.0/24"]
    assert disk_bytes(b, "db-drill").startswith(b"db initial data")
    assert int(drill.result["checks_passed"]) == 1
    cat = services.catalog()
    assert cat.group_state("shop") is GroupState.PROTECTED  # production untouched
    created = cat.created_resources(drill.id)
    assert sorted(r.kind for r in created) == ["network"] + ["server"] * 3 + ["volume"] * 3

    clean = _ok(service.run(OperationKind.CLEANUP, "shop", cleanup_workflow, drill.id))
    assert clean.result["removed"] == "7"
    b = lab.site("site-b")
    assert b.list_servers() == []
    assert {v.id for v in b.list_volumes()} == before_vols
    assert {n.name for n in b.list_networks()} == {"app-net", "unrelated-net"}
    assert all(r.removed for r in cat.created_resources(drill.id))


def test_second_drill_refused_until_cleanup(lab: Lab) -> None:
    _protect()
    first = _ok(service.run(OperationKind.TEST_FAILOVER, "shop", drill_workflow, "shop"))
    second = service.run(OperationKind.TEST_FAILOVER, "shop", drill_workflow, "shop")
    assert second.state is OperationState.FAILED
    assert first.id in second.error
    assert services.catalog().group_lock_holder("shop") is None


def test_unplanned_failover_from_latest_point_leaves_source_alone(lab: Lab) -> None:
    _protect()
    a = lab.site("site-a")
    a.write_disk("db", "vda", 0, b"db after the point ")
    a.set_down(True)  # site A is gone: failover must not need it
    op = _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop"))
    b = lab.site("site-b")
    assert {s.name for s in b.list_servers()} == set(SERVERS)
    assert disk_bytes(b, "db").startswith(b"db initial data")  # the point, not later writes
    assert float(op.result["rpo_s"]) >= 0 and float(op.result["rto_s"]) > 0
    cat = services.catalog()
    assert cat.group_state("shop") is GroupState.FAILED_OVER
    placement = cat.placement("shop")
    assert placement is not None and placement.active_site == "site-b"
    a.set_down(False)
    a = lab.site("site-a")
    assert {s.name for s in a.list_servers()} == set(SERVERS)  # nothing deleted at the source


def test_planned_failover_loses_nothing(lab: Lab) -> None:
    _protect()
    a = lab.site("site-a")
    a.write_disk("db", "vda", 0, b"db last write before planned failover")
    op = _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop", True))
    assert op.result["rpo_s"] == "0.0"
    b = lab.site("site-b")
    assert disk_bytes(b, "db").startswith(b"db last write before planned failover")
    a = lab.site("site-a")
    assert all(s.state is PowerState.SHUTOFF for s in a.list_servers())
    assert len(services.catalog().points("shop")) == 2


def _step(op: Operation, name: str) -> str:
    (detail,) = [s.detail for s in op.steps if s.name == name]
    return detail


def test_planned_failover_step_log_names_only_the_server_forced_off(lab: Lab) -> None:
    _protect()
    lab.site("site-a").set_powers_off("app", False)  # its shutdown handler hangs
    op = _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop", True))
    detail = _step(op, "failover.stop-source")
    assert "app (forced after sync)" in detail
    assert "db" in detail and "db (forced" not in detail and "web (forced" not in detail
    assert all(s.state is PowerState.SHUTOFF for s in lab.site("site-a").list_servers())


def test_planned_failover_step_log_says_nothing_forced_when_all_power_off(lab: Lab) -> None:
    _protect()
    op = _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop", True))
    detail = _step(op, "failover.stop-source")
    assert detail.startswith("stopped at site-a: ") and "forced" not in detail
    assert all(n in detail for n in SERVERS)


def test_failover_to_a_chosen_older_point(lab: Lab) -> None:
    first = _protect().result["point"]
    lab.site("site-a").write_disk("db", "vda", 0, b"db second version")
    _protect()
    op = _ok(service.run(OperationKind.FAILOVER, "shop", failover_workflow, "shop", False, first))
    assert op.result["point"] == first
    assert disk_bytes(lab.site("site-b"), "db").startswith(b"db initial data")
