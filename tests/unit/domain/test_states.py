"""Property tests of every transition table: legal moves land, illegal ones raise."""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.domain.errors import IllegalTransition
from haven.domain.groups import GROUP_STATES, GroupState
from haven.domain.operations import OPERATION_STATES, STEP_STATES
from haven.domain.points import POINT_STATES, PointState
from haven.domain.states import StateMachine

MACHINES: list[StateMachine[Any]] = [GROUP_STATES, POINT_STATES, OPERATION_STATES, STEP_STATES]


def _walk(machine: StateMachine[Any], targets: list[Enum]) -> None:
    state = machine.initial
    for target in targets:
        if machine.can(state, target):
            state = machine.transition(state, target)
            assert state is target
        else:
            with pytest.raises(IllegalTransition) as info:
                machine.transition(state, target)
            assert info.value.current == state.value and info.value.target == target.value


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
@given(data=st.data())
def test_random_walks_obey_the_table(machine: StateMachine[Any], data: st.DataObject) -> None:
    enum_type = type(machine.initial)
    targets = data.draw(st.lists(st.sampled_from(list(enum_type)), max_size=30))
    _walk(machine, targets)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_state_is_reachable_from_the_initial_state(machine: StateMachine[Any]) -> None:
    seen = {machine.initial}
    frontier = [machine.initial]
    while frontier:
        for nxt in machine.allowed(frontier.pop()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(type(machine.initial))


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_table_only_names_its_own_states(machine: StateMachine[Any]) -> None:
    enum_type = type(machine.initial)
    for source, targets in machine.table.items():
        assert isinstance(source, enum_type)
        assert all(isinstance(t, enum_type) for t in targets)


def test_committed_points_only_expire_or_turn_out_damaged() -> None:
    assert POINT_STATES.allowed(PointState.COMMITTED) == frozenset(
        {PointState.EXPIRED, PointState.DAMAGED}
    )
    # a damaged point is found whole again (after a repair) or expires; never re-captured
    assert POINT_STATES.allowed(PointState.DAMAGED) == frozenset(
        {PointState.COMMITTED, PointState.EXPIRED}
    )
    assert POINT_STATES.is_terminal(PointState.DELETED)


def test_failed_over_group_must_reverse_protect_before_failing_back() -> None:
    with pytest.raises(IllegalTransition, match=r"failed-over.*failing-back"):
        GROUP_STATES.transition(GroupState.FAILED_OVER, GroupState.FAILING_BACK)


def test_illegal_transition_message_lists_allowed_targets() -> None:
    with pytest.raises(IllegalTransition) as info:
        GROUP_STATES.transition(GroupState.UNPROTECTED, GroupState.FAILED_OVER)
    assert "protected, suspended" in str(info.value)


def test_a_table_missing_a_state_is_refused() -> None:
    with pytest.raises(ValueError, match="without a table entry"):
        StateMachine("broken", PointState.PENDING, {PointState.PENDING: frozenset()})
