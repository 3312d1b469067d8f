"""Every Haven error survives pickling (the workflow engine stores a failed step's
exception and raises it again when it replays the workflow), whatever its constructor."""

from __future__ import annotations

import pickle

import pytest

from haven.datamover.backends.base import ObjectNotFound
from haven.datamover.errors import CorruptObject, RepositoryCheckFailed, VolumeIOError
from haven.domain.errors import HavenError, IllegalTransition, ValidationError, ValidationErrors

CASES: list[HavenError] = [
    CorruptObject("data/ab/abcd", "authentication tag mismatch"),
    ValidationError("plans.shop.stages[1]", "unknown server"),
    ValidationErrors([ValidationError("a", "b"), ValidationError("c", "d")]),
    IllegalTransition("group", "protected", "failed-over", frozenset({"failing-over"})),
    RepositoryCheckFailed(["p1", "p2"], ["m1 (v@p)"]),
    ObjectNotFound("index/abc"),
    VolumeIOError("restore: No space left on device"),
]


@pytest.mark.parametrize("exc", CASES, ids=lambda e: type(e).__name__)
def test_round_trip(exc: HavenError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert repr(back.__dict__) == repr(exc.__dict__)  # (nested errors compare by identity)
    assert back.exit_code == exc.exit_code and back.retryable == exc.retryable
