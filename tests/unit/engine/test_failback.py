from __future__ import annotations

from haven.domain.groups import GroupState
from haven.domain.inventory import PowerState
from haven.domain.operations import OperationKind, OperationState
from haven.engine import lifecycle, service, services, status
from haven.engine.workflows.failback import failback_workflow
from haven.engine.workflows.failover import failover_workflow
from haven.engine.workflows.protect import protect_workflow
from tests.unit.engine.lab import DISK, SERVERS, Lab, disk_bytes


def _run(kind: OperationKind, wf: object, *args: object) -> dict[str, str]:
    op = service.run(kind, "shop", wf, *args)  # type: ignore[arg-type]
    assert op.state is OperationState.SUCCEEDED, (op.error, [(s.name, s.detail) for s in op.steps])
    return op.result


def test_failback_moves_only_the_delta_and_swaps_roles_back(lab: Lab) -> None:
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    _run(OperationKind.FAILOVER, failover_workflow, "shop")
    b = lab.site("site-b")
    b.write_disk("db", "vda", 0, b"written at the recovery site")
    res = _run(OperationKind.FAILBACK, failback_workflow, "shop")
    cat = services.catalog()
    assert cat.group_state("shop") is GroupState.PROTECTED
    placement = cat.placement("shop")
    assert placement is not None
    assert (placement.active_site, placement.standby_site) == ("site-a", "site-b")
    a = lab.site("site-a")
    assert disk_bytes(a, "db").startswith(b"written at the recovery site")
    assert int(res["reused_servers"]) == len(SERVERS)  # originals rewritten in place
    # delta only: one changed chunk travels back, not the three whole disks
    assert int(res["reverse_bytes_sent"]) < DISK
    assert int(res["bytes_written"]) <= 1024 * 1024 < int(res["bytes_total"])
    assert all(s.state is PowerState.RUNNING for s in a.list_servers())
    assert all(s.state is PowerState.SHUTOFF for s in lab.site("site-b").list_servers())
    # protection continues from the original site
    again = _run(OperationKind.PROTECT, protect_workflow, "shop")
    assert again["site"] == "site-a"


def test_failback_recreates_servers_when_the_original_site_was_wiped(lab: Lab) -> None:
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    a = lab.site("site-a")
    for s in a.list_servers():
        a.destroy_server(s.id)
        a.undefine_server(s.id)
    _run(OperationKind.FAILOVER, failover_workflow, "shop")
    res = _run(OperationKind.FAILBACK, failback_workflow, "shop")
    assert res["reused_servers"] == "0"
    a = lab.site("site-a")
    assert {s.name for s in a.list_servers()} == set(SERVERS)
    assert disk_bytes(a, "web").startswith(b"web initial data")


def test_suspend_resume_and_status(lab: Lab) -> None:
    assert status.group_status("shop").compliance is status.Compliance.BREACH  # no point yet
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    assert status.group_status("shop").compliance is status.Compliance.COMPLIANT
    assert lifecycle.suspend("shop") is GroupState.SUSPENDED
    st = status.group_status("shop")
    assert st.compliance is status.Compliance.SUSPENDED and st.last_point is not None
    refused = service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop")
    assert refused.state is OperationState.FAILED and "suspended" in refused.error
    assert lifecycle.resume("shop") is GroupState.PROTECTED
    lab.site("site-a").write_disk("app", "vda", 0, b"x")
    res = _run(OperationKind.PROTECT, protect_workflow, "shop")
    assert res["incremental"] == "True" and int(res["bytes_read"]) < DISK


def test_failback_step_log_names_home_servers_it_had_to_force_off(lab: Lab) -> None:
    _run(OperationKind.PROTECT, protect_workflow, "shop")
    _run(OperationKind.FAILOVER, failover_workflow, "shop")  # site A's servers still run
    lab.site("site-a").set_powers_off("db", False)
    lab.site("site-b").set_powers_off("web", False)
    op = service.run(OperationKind.FAILBACK, "shop", failback_workflow, "shop")
    assert op.state is OperationState.SUCCEEDED, op.error
    steps = {s.name: s.detail for s in op.steps}
    assert "stopped db at site-a (forced)" in steps["failback.prepare"]
    assert "stopped app at site-a" in steps["failback.prepare"]
    assert "app at site-a (forced)" not in steps["failback.prepare"]
    stop = steps["failback.stop-recovered"]
    assert "web (forced after sync)" in stop and "db (forced" not in stop
