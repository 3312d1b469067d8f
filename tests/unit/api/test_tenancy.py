"""Tenancy in the engine (no Keystone needed): the scope hides other projects' objects
as if they did not exist, a project's apply is held to groups and plans of its own, and
of many concurrent submits for one group exactly one is recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.catalog.submissions import IdempotencyMismatch
from haven.domain.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
    ValidationErrors,
)
from haven.domain.operations import Operation, OperationKind, OperationState
from haven.domain.resources import ResourceKind
from haven.engine import api as engine
from haven.engine.scope import OPERATOR, Scope
from haven.engine.submit import Submission
from haven.specs import parse_spec
from tests.support.api import BETA_GROUP, TenantHome, tenant_home

ALPHA, BETA = "p-alpha", "p-beta"
A, B = Scope.of(ALPHA), Scope.of(BETA)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TenantHome]:
    with tenant_home(tmp_path, monkeypatch, ALPHA, BETA) as h:
        yield h


def wait_done(op_id: str, timeout: float = 60) -> Operation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = engine.operation(op_id)
        if op.state not in (OperationState.PENDING, OperationState.RUNNING):
            return op
        time.sleep(0.1)  # polling the catalog for the end, bounded by the deadline
    raise AssertionError(f"operation {op_id} still {op.state} after {timeout}s")


def test_the_spec_carries_a_validated_project() -> None:
    group = {**BETA_GROUP, "project": "0123abc_-Z"}
    assert parse_spec({"groups": [group]}).resources.groups[0].project == "0123abc_-Z"
    for bad in ("", "../etc", "a" * 65, "sp ace"):
        with pytest.raises(ValidationErrors) as err:
            parse_spec({"groups": [{**BETA_GROUP, "project": bad}]})
        assert "project" in str(err.value)


def test_another_projects_objects_do_not_exist_for_a_scope(home: TenantHome) -> None:
    names = lambda kind, scope: [r.name for r in engine.resources(kind, scope)]  # noqa: E731
    assert names(ResourceKind.GROUP, A) == ["shop"]
    assert names(ResourceKind.GROUP, B) == ["beta-app"]
    assert names(ResourceKind.PLAN, B) == ["beta-app"]
    assert names(ResourceKind.GROUP, OPERATOR) == ["beta-app", "shop"]
    assert names(ResourceKind.SITE, B) == ["site-a", "site-b"]  # published to everyone
    assert names(ResourceKind.GROUP, Scope.of("p-nobody")) == []
    reads = (
        lambda name: engine.resource(ResourceKind.GROUP, name, B),
        lambda name: engine.resource(ResourceKind.PLAN, name, B),
        lambda name: engine.points(name, B),
        lambda name: engine.operations(name, 10, B),
        lambda name: engine.suspend(name, B),
        lambda name: engine.resume(name, B),
    )
    for read in reads:
        with pytest.raises(NotFoundError) as hidden:
            read("shop")
        with pytest.raises(NotFoundError) as unknown:
            read("nope")
        # the same words as for a group that does not exist, and no list of known names
        assert str(hidden.value).replace("shop", "X") == str(unknown.value).replace("nope", "X")
        assert "beta-app" not in str(hidden.value) and "known" not in str(hidden.value)
    assert [s.group for s in engine.status(B)] == ["beta-app"]


def test_a_projects_apply_holds_groups_and_plans_of_its_own(home: TenantHome) -> None:
    mine = {**BETA_GROUP, "name": "beta-two", "members": [{"server": "beta-two"}]}
    engine.apply({"groups": [mine]}, B)
    assert engine.resource(ResourceKind.GROUP, "beta-two", B).project == BETA  # forced
    with pytest.raises(ValidationError) as err:
        engine.apply({"groups": [{**mine, "project": ALPHA}]}, B)
    assert err.value.path == "groups.beta-two.project"
    with pytest.raises(ConflictError) as taken:
        engine.apply({"groups": [{**mine, "name": "shop"}]}, B)
    assert "taken" in str(taken.value) and ALPHA not in str(taken.value)
    with pytest.raises(ConflictError):
        engine.apply({"plans": [{"name": "shop", "group": "beta-two", "stages": []}]}, B)
    with pytest.raises(ValidationError) as err:
        engine.apply({"plans": [{"name": "mine", "group": "shop", "stages": []}]}, B)
    assert err.value.path == "plans.mine.group"
    with pytest.raises(ForbiddenError):
        engine.apply({"policies": [{"name": "cheap", "rpo": "1h"}]}, B)
    host_hook = {"server": "beta-two", "hooks": {"pre_freeze": [{"command": "x", "where": "host"}]}}
    with pytest.raises(ForbiddenError):
        engine.apply({"groups": [{**mine, "members": [host_hook]}]}, B)
    dry = engine.apply({"groups": [{**mine, "description": "d"}]}, B, dry_run=True)
    assert dry.changed and engine.resource(ResourceKind.GROUP, "beta-two", B).description == ""


def test_deleting_a_group_needs_its_plans_gone_first(home: TenantHome) -> None:
    with pytest.raises(ConflictError) as err:
        engine.delete_resource(ResourceKind.GROUP, "beta-app", B)
    assert "beta-app" in str(err.value)
    with pytest.raises(NotFoundError):
        engine.delete_resource(ResourceKind.PLAN, "beta-app", A)
    engine.delete_resource(ResourceKind.PLAN, "beta-app", B)
    engine.delete_resource(ResourceKind.GROUP, "beta-app", B)
    assert engine.resources(ResourceKind.GROUP, B) == []


def test_of_200_concurrent_submits_for_one_group_exactly_one_is_recorded(
    home: TenantHome,
) -> None:
    outcomes: list[object] = []
    start = threading.Barrier(200)

    def one() -> None:
        start.wait()
        try:
            outcomes.append(engine.submit(Submission(OperationKind.PROTECT, "shop"), A)[0])
        except ConflictError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = [o for o in outcomes if isinstance(o, Operation)]
    assert len(ops) == 1 and len(outcomes) == 200, outcomes[:3]
    assert wait_done(ops[0].id).state is OperationState.SUCCEEDED
    assert [o.id for o in engine.operations("shop", 1000, A)] == [ops[0].id]
    keyed: list[object] = []
    start = threading.Barrier(100)

    def replay() -> None:
        start.wait()
        try:
            keyed.append(engine.submit(Submission(OperationKind.PROTECT, "shop"), A, "k")[0].id)
        except ConflictError as exc:  # a replay must never be refused as busy
            keyed.append(exc)

    threads = [threading.Thread(target=replay) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keyed)) == 1 and isinstance(keyed[0], str), set(map(str, keyed))
    assert wait_done(str(keyed[0])).state is OperationState.SUCCEEDED


def test_an_idempotency_key_replays_its_operation_and_refuses_another_request(
    home: TenantHome,
) -> None:
    sub = Submission(OperationKind.PROTECT, "shop")
    first, replayed = engine.submit(sub, A, "key-1")
    assert not replayed
    again, replayed = engine.submit(sub, A, "key-1")
    assert replayed and again.id == first.id
    with pytest.raises(IdempotencyMismatch) as err:
        engine.submit(Submission(OperationKind.PROTECT, "shop", planned=True), A, "key-1")
    assert err.value.path == "Idempotency-Key"
    wait_done(first.id)
    # the same key in another project is another key
    other, replayed = engine.submit(Submission(OperationKind.PROTECT, "beta-app"), B, "key-1")
    assert not replayed and other.id != first.id
    assert wait_done(other.id).state is OperationState.FAILED  # beta-solo does not exist
    with pytest.raises(NotFoundError):
        engine.operation(first.id, B)


def test_a_point_is_deleted_except_the_newest_intact_one(home: TenantHome) -> None:
    sub = Submission(OperationKind.PROTECT, "shop")
    first = wait_done(engine.submit(sub, A)[0].id)
    second = wait_done(engine.submit(sub, A)[0].id)
    older, newer = first.result["point"], second.result["point"]
    with pytest.raises(NotFoundError):
        engine.delete_point(older, B)
    with pytest.raises(ConflictError) as err:
        engine.delete_point(newer, A)
    assert "newest intact" in str(err.value)
    manifests = [v.manifest for v in engine.point(older, A).volumes]
    assert engine.delete_point(older, A).state.value == "deleted"
    assert engine.point(older, A).state.value == "deleted"
    repo = home.lab.root / "repo"
    names = {p.name for p in repo.rglob("*")}
    assert manifests and not any(m in n for m in manifests for n in names)
    third = wait_done(engine.submit(sub, A)[0].id)
    assert third.state is OperationState.SUCCEEDED
    # pages, newest first (the deleted point too: it is answered as it is)
    newest = third.result["point"]
    assert [p.id for p in engine.points_page("shop", 2, None, A)] == [newest, newer]
    assert [p.id for p in engine.points_page("shop", 2, newer, A)] == [older]
    assert engine.points_page("shop", 2, older, A) == []
    with pytest.raises(NotFoundError):
        engine.points_page("shop", 2, None, B)  # another project's group
    with pytest.raises(NotFoundError):
        engine.points_page("beta-app", 2, newer, B)  # a marker not of that group
    with pytest.raises(NotFoundError):
        engine.points_page("shop", 2, "rp-nothing", A)


def test_an_operation_the_engine_cannot_start_fails_and_frees_its_group(
    home: TenantHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workflow library refusing to start a recorded operation (here: made to raise)
    leaves it failed with the reason, and the group free for the next submit."""
    import haven.engine.submit as submit_mod

    def refuse(*_args: object, **_kw: object) -> None:
        raise RuntimeError("the workflow engine is unavailable")

    with monkeypatch.context() as patched, pytest.raises(RuntimeError):
        patched.setattr(submit_mod.DBOS, "start_workflow", refuse)
        engine.submit(Submission(OperationKind.PROTECT, "shop"), A)
    (failed,) = engine.operations(scope=A)
    assert failed.state is OperationState.FAILED and "unavailable" in failed.error
    ok = wait_done(engine.submit(Submission(OperationKind.PROTECT, "shop"), A)[0].id)
    assert ok.state is OperationState.SUCCEEDED
