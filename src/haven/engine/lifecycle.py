"""Suspend and resume protection of a group (operator actions, not workflows).

Suspended: the scheduler takes no points and ``haven status`` reports the RPO as allowed
to grow. Resume returns to protected (or unprotected if no point exists yet); the next
point increments from the last committed one (changed-block tracking at the site, chunk
reuse in the repository), never a full copy.
"""

from __future__ import annotations

from haven.catalog.errors import GroupBusy
from haven.domain.groups import GROUP_STATES, GroupState
from haven.engine import resolve, services


def suspend(group: str) -> GroupState:
    cat = services.catalog()
    holder = cat.group_lock_holder(group)
    if holder is not None:
        raise GroupBusy(group, holder)
    state = cat.group_state(group)
    if state is GroupState.SUSPENDED:
        return state
    return cat.set_group_state(group, GROUP_STATES.transition(state, GroupState.SUSPENDED))


def resume(group: str) -> GroupState:
    cat = services.catalog()
    state = cat.group_state(group)
    if state is not GroupState.SUSPENDED:
        return state
    target = GroupState.PROTECTED if resolve.committed_points(group) else GroupState.UNPROTECTED
    return cat.set_group_state(group, target)
