from __future__ import annotations

import copy
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from haven.catalog.db import MIGRATIONS
from haven.catalog.errors import CatalogError, GroupBusy
from haven.catalog.store import Catalog
from haven.domain.errors import ExitCode, IllegalTransition, NotFoundError, ValidationErrors
from haven.domain.groups import GroupState
from haven.domain.operations import Operation, OperationKind, OperationState, Step, StepState
from haven.domain.points import Damage, PointState, RecoveryPoint
from haven.domain.resources import ResourceKind
from haven.engine.apply import ChangeAction, apply_spec
from haven.specs import parse_spec

EXAMPLE = Path(__file__).parents[3] / "examples" / "three-tier.yaml"


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return data


@pytest.fixture
def catalog(catalog_url: str) -> Catalog:
    cat = Catalog.open(catalog_url)
    yield cat  # type: ignore[misc]
    cat.close()


def test_apply_creates_then_is_idempotent_then_updates(catalog: Catalog) -> None:
    first = apply_spec(catalog, parse_spec(example()))
    assert {c.action for c in first.changes} == {ChangeAction.CREATE}
    assert catalog.resources().count() == 6

    again = apply_spec(catalog, parse_spec(example()))
    assert not again.changed

    data = example()
    data["policies"][0]["rpo"] = "10m"
    third = apply_spec(catalog, parse_spec(data))
    (changed,) = [c for c in third.changes if c.action is ChangeAction.UPDATE]
    assert (changed.kind, changed.name) == (ResourceKind.POLICY, "gold")
    assert [(f.path, f.old, f.new) for f in changed.fields] == [("rpo_seconds", 300, 600)]
    assert catalog.generations(ResourceKind.POLICY, ["gold"]) == {"gold": 2}


def test_rejected_apply_writes_nothing(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    before = catalog.resources()
    data = example()
    data["policies"][0]["rpo"] = "1h"  # a valid change ...
    data["plans"][0]["stages"][1]["depends_on"] = ["db2"]  # ... next to an invalid one
    with pytest.raises(ValidationErrors, match="unknown server 'db2'"):
        apply_spec(catalog, parse_spec(data))
    assert catalog.resources() == before


def test_a_spec_may_reference_resources_applied_earlier(catalog: Catalog) -> None:
    data = example()
    apply_spec(
        catalog,
        parse_spec(
            {
                "sites": data["sites"],
                "policies": data["policies"],
                "repositories": data["repositories"],
            }
        ),
    )
    result = apply_spec(catalog, parse_spec({"groups": data["groups"], "plans": data["plans"]}))
    assert [c.action for c in result.changes] == [ChangeAction.CREATE, ChangeAction.CREATE]


def test_second_group_cannot_claim_a_server_already_in_the_catalog(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    group = copy.deepcopy(example()["groups"][0])
    group.update(name="other", members=[{"server": "web"}])
    with pytest.raises(ValidationErrors, match="already in group 'shop'"):
        apply_spec(catalog, parse_spec({"groups": [group]}))


def test_dry_run_writes_nothing(catalog: Catalog) -> None:
    result = apply_spec(catalog, parse_spec(example()), dry_run=True)
    assert result.changed and catalog.resources().count() == 0


def test_group_state_follows_the_transition_table(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    assert catalog.group_state("shop") is GroupState.UNPROTECTED
    catalog.set_group_state("shop", GroupState.PROTECTED)
    with pytest.raises(IllegalTransition):
        catalog.set_group_state("shop", GroupState.FAILED_OVER)
    assert catalog.group_state("shop") is GroupState.PROTECTED
    # re-applying the spec keeps the runtime state
    apply_spec(catalog, parse_spec(example()))
    assert catalog.group_state("shop") is GroupState.PROTECTED


def test_one_operation_per_group(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    catalog.acquire_group_lock("shop", "op-1")
    catalog.acquire_group_lock("shop", "op-1")  # re-entrant for the same operation
    with pytest.raises(GroupBusy, match="op-1"):
        catalog.acquire_group_lock("shop", "op-2")
    catalog.release_group_lock("shop", "op-1")
    catalog.acquire_group_lock("shop", "op-2")


def test_concurrent_lock_attempts_admit_exactly_one(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    winners: list[str] = []
    errors: list[Exception] = []

    def attempt(op_id: str) -> None:
        try:
            catalog.acquire_group_lock("shop", op_id)
            winners.append(op_id)
        except (GroupBusy, CatalogError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(f"op-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(errors) == 5


def test_points_and_operations_round_trip(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    now = datetime.now(UTC)
    point = RecoveryPoint("rp-1", "shop", "site-a", now, PointState.COMMITTED)
    catalog.save_point(point)
    assert catalog.points("shop") == [point]
    op = Operation("op-1", OperationKind.PROTECT, "shop", OperationState.RUNNING, now)
    catalog.save_operation(op)
    catalog.save_step("op-1", Step(0, "freeze", StepState.RUNNING, now))
    catalog.save_step("op-1", Step(0, "freeze", StepState.DONE, now, now, "3 guests"))
    loaded = catalog.operation("op-1")
    assert loaded.state is OperationState.RUNNING
    assert [(s.name, s.state, s.detail) for s in loaded.steps] == [
        ("freeze", StepState.DONE, "3 guests")
    ]


def test_not_found_names_the_known_resources(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    with pytest.raises(NotFoundError, match=r"no group named 'nope' \(known: shop\)"):
        catalog.get(ResourceKind.GROUP, "nope")


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(CatalogError, match="cannot open the catalog at postgresql"):
        Catalog.open("postgresql+psycopg://haven:secret-pw@127.0.0.1:1/nothing")


def test_times_come_back_aware_utc_whatever_zone_was_written(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 5, 1, 14, 0, tzinfo=plus_two)
    catalog.save_operation(
        Operation("op-1", OperationKind.PROTECT, "shop", OperationState.RUNNING, local)
    )
    catalog.save_step("op-1", Step(0, "freeze", StepState.DONE, local, local))
    loaded = catalog.operation("op-1")
    listed = catalog.operations("shop")[0]
    for when in (loaded.created_at, loaded.steps[0].started_at, loaded.steps[0].finished_at,
                 listed.created_at):  # fmt: skip
        assert when is not None and when.utcoffset() == timedelta(0)
        assert when == local  # the same instant, in UTC
    catalog.save_point(RecoveryPoint("rp-1", "shop", "site-a", local, PointState.COMMITTED))
    assert catalog.point("rp-1").created_at.utcoffset() == timedelta(0)


def test_a_failed_operation_keeps_its_error_type_and_exit_code(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    now = datetime.now(UTC)
    failed = Operation("op-1", OperationKind.FAILOVER, "shop", OperationState.FAILED, now,
                       now, error="PointDamaged: ...", error_type="PointDamaged",
                       exit_code=ExitCode.INTEGRITY)  # fmt: skip
    catalog.save_operation(failed)
    loaded = catalog.operation("op-1")
    assert (loaded.error_type, loaded.exit_code) == ("PointDamaged", ExitCode.INTEGRITY)


def test_point_states_follow_the_state_machine_where_they_are_written(catalog: Catalog) -> None:
    apply_spec(catalog, parse_spec(example()))
    now = datetime.now(UTC)
    point = RecoveryPoint("rp-1", "shop", "site-a", now, PointState.COMMITTED)
    catalog.save_point(point)
    with pytest.raises(IllegalTransition, match=r"committed.*pending"):
        catalog.save_point(replace(point, state=PointState.PENDING))
    first = Damage(("data/ab/abcd",), "authentication tag mismatch", now, "op-1")
    damaged = catalog.mark_point_damaged("rp-1", first)
    assert damaged.state is PointState.DAMAGED and damaged.damage == first
    later = Damage(("manifests/m-2",), "manifest missing", now + timedelta(1), "repo check")
    both = catalog.mark_point_damaged("rp-1", later)  # more findings on a damaged point
    assert both.damage is not None
    assert both.damage.objects == ("data/ab/abcd", "manifests/m-2")
    assert both.damage.reason == "authentication tag mismatch; manifest missing"
    assert both.damage.found_by == "repo check"
    assert catalog.points("shop") == [both]
    intact = catalog.mark_point_intact("rp-1")
    assert intact.state is PointState.COMMITTED and intact.damage is None
    catalog.save_point(replace(intact, state=PointState.EXPIRED))
    with pytest.raises(IllegalTransition):
        catalog.mark_point_damaged("rp-1", first)  # an expired point is not marked
    with pytest.raises(NotFoundError):
        catalog.mark_point_intact("rp-nope")


def test_operations_written_before_0003_read_without_a_failure_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.execute(
            text(
                "INSERT INTO operations (id, kind, group_name, state, created_at, params, "
                "result, error) VALUES ('op-old', 'protect', 'shop', 'failed', "
                "'2026-01-02 03:04:05.000000', '{}', '{}', 'ExternalError: site down')"
            )
        )
    engine.dispose()
    cat = Catalog.open(url)  # upgrades to head
    try:
        old = cat.operation("op-old")
        assert (old.error_type, old.exit_code) == ("", None)
        assert old.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    finally:
        cat.close()


def test_operation_and_step_states_follow_their_tables_where_they_are_written(
    catalog: Catalog,
) -> None:
    now = datetime.now(UTC)
    op = Operation("op-9", OperationKind.PROTECT, "shop", OperationState.RUNNING, now)
    catalog.save_operation(op)
    catalog.save_operation(replace(op, state=OperationState.SUCCEEDED, finished_at=now))
    with pytest.raises(IllegalTransition, match=r"succeeded.*running"):
        catalog.save_operation(op)  # a finished operation never runs again
    assert catalog.operation("op-9").state is OperationState.SUCCEEDED  # nothing written
    step = Step(0, "protect.start", StepState.RUNNING, now)
    catalog.save_step("op-9", step)
    catalog.save_step("op-9", replace(step, state=StepState.DONE, finished_at=now))
    with pytest.raises(IllegalTransition, match=r"done.*failed"):
        catalog.save_step("op-9", replace(step, state=StepState.FAILED))
    catalog.save_step("op-9", step)  # re-run after a crash (steps run at least once)
