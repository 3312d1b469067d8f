from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from haven.domain.codec import from_data, to_data
from haven.domain.errors import ExitCode, NotFoundError
from haven.domain.operations import Failure
from haven.domain.points import (
    Consistency,
    Damage,
    PointState,
    PointStats,
    RecoveryPoint,
    VolumePoint,
)
from haven.domain.resources import KIND_TYPES, ResourceKind
from haven.specs import load_spec

EXAMPLE = Path(__file__).parents[3] / "examples" / "three-tier.yaml"


def test_every_example_resource_round_trips() -> None:
    resources = load_spec(EXAMPLE).resources
    assert resources.count() == 6
    for kind in ResourceKind:
        for item in resources.of_kind(kind):
            assert from_data(KIND_TYPES[kind], to_data(item)) == item


def test_recovery_point_round_trips() -> None:
    point = RecoveryPoint(
        id="rp-1",
        group="shop",
        source_site="site-a",
        created_at=datetime.now(UTC),
        state=PointState.COMMITTED,
        consistency=Consistency.APPLICATION,
        volumes=(VolumePoint("db", "vdb", 1 << 30, "m-1", 10, 5),),
        stats=PointStats(freeze_window_ms=12.5, bytes_read=10, bytes_sent=5),
    )
    assert from_data(RecoveryPoint, to_data(point)) == point


def test_damaged_point_round_trips_and_older_documents_read_without_damage() -> None:
    now = datetime.now(UTC)
    damage = Damage(("data/ab/abcd", "manifests/m-1"), "authentication tag mismatch", now,
                    "op-1")  # fmt: skip
    point = RecoveryPoint("rp-1", "shop", "site-a", now, PointState.DAMAGED, damage=damage)
    assert from_data(RecoveryPoint, to_data(point)) == point
    older = to_data(replace(point, state=PointState.COMMITTED, damage=None))
    del older["damage"]  # written before points could be damaged
    assert from_data(RecoveryPoint, older).damage is None


def test_failure_of_an_error_carries_its_exit_code() -> None:
    assert Failure.of(NotFoundError("no point rp-x")) == Failure(
        "NotFoundError", ExitCode.NOT_FOUND, "NotFoundError: no point rp-x"
    )
    assert Failure.of(KeyError("x")).exit_code is ExitCode.INTERNAL  # a bug
