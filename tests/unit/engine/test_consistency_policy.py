"""The consistency protocol through the engine: fallback, failure by policy, hooks."""

from __future__ import annotations

from haven.domain.operations import OperationKind, OperationState
from haven.domain.points import Consistency, PointState
from haven.engine import service, services
from haven.engine.apply import apply_spec
from haven.engine.workflows.protect import protect_workflow
from haven.specs import load_spec_bytes
from tests.unit.engine.lab import Lab


def _reapply(lab: Lab, old: str, new: str) -> None:
    text = lab.spec.read_text()
    assert old in text
    apply_spec(services.catalog(), load_spec_bytes(text.replace(old, new).encode(), "spec"))


def _protect() -> object:
    return service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop")


def test_agent_silent_falls_back_to_crash_consistent_with_reason(lab: Lab) -> None:
    a = lab.site("site-a")
    a.set_agent(a.get_server("app").id, responsive=False)
    op = _protect()
    assert op.state is OperationState.SUCCEEDED, op.error  # type: ignore[attr-defined]
    point = services.catalog().points("shop")[-1]
    assert point.consistency is Consistency.CRASH and "app" in point.consistency_reason
    assert not lab.site("site-a").frozen  # everything thawed


def test_application_required_and_freeze_too_slow_fails_the_point(lab: Lab) -> None:
    _reapply(lab, "consistency: application-or-crash", "consistency: application")
    a = lab.site("site-a")
    a.set_agent(a.get_server("web").id, freeze_delay_s=6.0)  # the policy allows 5 s
    op = _protect()
    assert op.state is OperationState.FAILED  # type: ignore[attr-defined]
    assert "QuiesceFailed" in op.error  # type: ignore[attr-defined]
    points = services.catalog().points("shop")
    assert all(p.state is not PointState.COMMITTED for p in points)
    assert not lab.site("site-a").frozen
    assert services.catalog().group_lock_holder("shop") is None


def test_failing_pre_freeze_hook_stops_the_point_before_any_freeze(lab: Lab) -> None:
    _reapply(lab, 'pre_freeze: [{command: "true"', 'pre_freeze: [{command: "false"')
    before = len(lab.site("site-a").freeze_log)
    op = _protect()
    assert op.state is OperationState.FAILED  # type: ignore[attr-defined]
    assert "pre-freeze hook" in op.error  # type: ignore[attr-defined]
    assert len(lab.site("site-a").freeze_log) == before  # nobody was frozen
