"""Per-project quotas (engine/quotas.py): each enforcement point refuses before any work
and leaves nothing behind: no point, no group row, no repository object."""

from __future__ import annotations

import pytest

from haven.domain.errors import (
    ExitCode,
    QuotaExceeded,
    SizeQuotaExceeded,
    ValidationError,
)
from haven.domain.operations import Operation, OperationKind, OperationState
from haven.domain.points import PointState
from haven.domain.resources import ResourceKind
from haven.engine import api, scheduler, service, services
from haven.engine.quotas import MAX_LIMIT, QuotaResource
from haven.engine.workflows.protect import protect_workflow
from tests.support.tenants import add_twin_servers, apply_groups, mall_group, two_projects
from tests.unit.engine.conftest import LabFactory
from tests.unit.engine.lab import DISK, Lab

Q = QuotaResource


def _ok(op: Operation) -> Operation:
    assert op.state is OperationState.SUCCEEDED, (op.error, [(s.name, s.detail) for s in op.steps])
    return op


def _objects(lab: Lab) -> dict[str, int]:
    """Every object of the lab's local repository, with its size."""
    repo = lab.root / "repo"
    return {str(p.relative_to(repo)): p.stat().st_size for p in repo.rglob("*") if p.is_file()
            and not str(p.relative_to(repo)).startswith("locks")}  # fmt: skip


def _groups() -> set[str]:
    return {g.name for g in services.catalog().resources().groups}


def test_a_group_beyond_the_groups_quota_is_refused_and_nothing_is_written(lab: Lab) -> None:
    apply_groups(lab)  # shop moves into p1
    api.set_quota("p1", {Q.GROUPS: 1})
    add_twin_servers(lab)
    with pytest.raises(QuotaExceeded) as exc:
        apply_groups(lab, mall_group("p1"))
    err = exc.value
    assert (err.quota, err.limit, err.in_use, err.wanted) == ("groups", 1, 1, 2)
    assert err.exit_code is ExitCode.CONFLICT and err.http_status == 403
    assert "p1" in str(err) and "limit 1" in str(err) and "in use 1" in str(err)
    assert _groups() == {"shop"}  # the whole apply refused
    # another project, the operator's groups and re-applying what exists are not refused
    apply_groups(lab, mall_group("p2"))
    api.set_quota("p1", {Q.GROUPS: 0})  # lowered below the use: shop stays...
    apply_groups(lab, mall_group("p2"))  # ...and may be applied again unchanged
    assert _groups() == {"shop", "mall"}
    assert api.quota("p1").groups.in_use == 1


def test_a_protect_beyond_the_points_quota_is_refused_before_any_work(lab: Lab) -> None:
    two_projects(lab)
    api.set_quota("p1", {Q.POINTS: 1})
    _ok(api.protect("shop"))
    objects = _objects(lab)
    before = services.catalog().points("shop")
    ops = services.catalog().operations("shop")
    with pytest.raises(QuotaExceeded) as exc:  # the lab keeps 3 points: none would expire
        api.protect("shop")
    assert (exc.value.quota, exc.value.limit, exc.value.in_use, exc.value.wanted) == (
        "points", 1, 1, 2)  # fmt: skip
    assert exc.value.http_status == 403
    assert services.catalog().points("shop") == before
    assert services.catalog().operations("shop") == ops  # refused before an operation
    assert _objects(lab) == objects
    _ok(api.protect("mall"))  # p2 has no quota
    # in the workflow too (haven serve starts it without the API): the operation fails
    # in its first step, with the quota's exit code, and nothing else happens
    op = service.run(OperationKind.PROTECT, "shop", protect_workflow, "shop")
    assert op.state is OperationState.FAILED and op.error_type == "QuotaExceeded"
    assert op.exit_code is ExitCode.CONFLICT
    assert [s.name for s in op.steps] == ["protect.start", "fail"]
    assert services.catalog().points("shop") == before
    assert services.catalog().group_lock_holder("shop") is None
    # ...and serve does not try again within the policy's interval
    assert "shop" not in [name for name, _ in scheduler.due_groups()]


def test_the_points_quota_counts_the_points_retention_will_expire(lab_with: LabFactory) -> None:
    lab = lab_with(keep_last=1)
    apply_groups(lab)
    api.set_quota("p1", {Q.POINTS: 1})
    for _ in range(3):  # each protect's retention expires the previous point
        _ok(api.protect("shop"))
    held = [p for p in services.catalog().points("shop") if p.state is PointState.COMMITTED]
    assert len(held) == 1 and api.quota("p1").points.in_use == 1


def test_a_protect_beyond_the_protected_bytes_quota_is_refused_with_413(lab: Lab) -> None:
    apply_groups(lab)
    api.set_quota("p1", {Q.PROTECTED_BYTES: 3 * DISK - 1})  # shop: three 2 MiB disks
    with pytest.raises(SizeQuotaExceeded) as exc:
        api.protect("shop")
    err = exc.value
    assert (err.quota, err.limit, err.in_use, err.wanted) == (
        "protected_bytes", 3 * DISK - 1, 0, 3 * DISK)  # fmt: skip
    assert err.http_status == 413 and err.exit_code is ExitCode.CONFLICT
    assert "--protected-bytes" in str(err)
    assert services.catalog().points("shop") == []
    assert not (lab.root / "repo").exists()  # no repository object, not even the repository
    api.set_quota("p1", {Q.PROTECTED_BYTES: 3 * DISK})
    _ok(api.protect("shop"))
    assert api.quota("p1").protected_bytes.in_use == 3 * DISK


def test_the_operators_groups_and_recovery_points_are_never_refused(lab: Lab) -> None:
    api.set_quota("p1", {Q.POINTS: 0, Q.GROUPS: 0, Q.PROTECTED_BYTES: 0})
    _ok(api.protect("shop"))  # shop has no project here: the operator's
    apply_groups(lab, shop_project=None)
    api.set_quota("p1", {Q.POINTS: None, Q.GROUPS: None, Q.PROTECTED_BYTES: None})
    apply_groups(lab)  # shop into p1, now with one point
    api.set_quota("p1", {Q.POINTS: 1})
    # a planned failover takes a final point of its own: recovery is never refused
    _ok(api.failover("shop", planned=True))
    assert api.quota("p1").points.in_use == 2


def test_quota_values_and_projects_are_checked(lab: Lab) -> None:
    for resource in Q:
        with pytest.raises(ValidationError) as exc:
            api.set_quota("p1", {resource: -1})
        assert exc.value.path == resource.value
        with pytest.raises(ValidationError):
            api.set_quota("p1", {resource: MAX_LIMIT[resource] + 1})
    with pytest.raises(ValidationError) as exc:
        api.set_quota("p1", {Q.POINTS: True})  # type: ignore[dict-item]
    with pytest.raises(ValidationError) as exc:
        api.quota("../etc")
    assert exc.value.path == "project"
    assert api.list_quotas() == []  # nothing was stored
    shown = api.set_quota("p1", {Q.POINTS: 5})
    assert (shown.points.limit, shown.groups.limit, shown.protected_bytes.limit) == (5, None, None)
    assert api.set_quota("p1", {Q.GROUPS: 2}).points.limit == 5  # the others stay
    api.set_quota("p1", {Q.POINTS: None, Q.GROUPS: None})
    assert api.list_quotas() == []  # no limit left: no row


def test_a_group_project_must_be_a_project_id(lab: Lab) -> None:
    from haven.domain.errors import ValidationErrors

    with pytest.raises(ValidationErrors) as exc:
        apply_groups(lab, shop_project="not a project!")
    assert str(exc.value).startswith("groups.shop.project: 'not a project!' is not a project id")
    assert services.catalog().get(ResourceKind.GROUP, "shop").project is None  # type: ignore[union-attr]
